//! Pages render to their end whatever else the process is doing.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::helpers::*;

/// Building another app in the same process while a page renders never
/// leaves the page hanging. Leptos walks an app's routes under a
/// process-wide flag, and a resource first polled while it is set never
/// resolves (leptos-rs/leptos#4773): with one walk per build, a signed-in
/// page whose user resource started during another build's walk never
/// finished (CI saw `/no-such-page` time out after 60 s). Here a thread
/// builds apps without pause while this browser loads pages.
#[tokio::test]
async fn building_apps_beside_a_rendering_page_never_hangs_it() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;

    let stop = Arc::new(AtomicBool::new(false));
    let builder = std::thread::spawn({
        let stop = stop.clone();
        let issuer = idp.issuer.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut built = 0;
            while !stop.load(Ordering::Relaxed) {
                runtime.block_on(spawn_app(&issuer));
                built += 1;
            }
            built
        }
    });
    let mut loaded = 0;
    for path in ["/no-such-page", "/profile", "/"].iter().cycle().take(90) {
        let page = tokio::time::timeout(Duration::from_secs(10), async {
            let response = app.get_page(path).await;
            (response.status(), response.text().await.unwrap())
        })
        .await;
        let Ok((status, html)) = page else {
            stop.store(true, Ordering::Relaxed);
            panic!("{path} did not finish within 10 s while apps were being built");
        };
        assert!(status == 200 || (*path == "/no-such-page" && status == 404));
        assert!(html.contains("alice"), "{path} rendered signed in: {html}");
        loaded += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let built = builder.join().unwrap();
    assert_eq!(loaded, 90);
    assert!(built >= 3, "only {built} apps built beside the pages");
}
