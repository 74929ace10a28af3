//! The per-process session cache (`src/server/store/cache.rs`) against what
//! it could get wrong: serving a session after it ended, and a second process
//! on a SQLite file whose writes it cannot see. (Serving an older revision
//! than another instance wrote: `redis.rs`.)

use std::{
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use reqwest::StatusCode;

use crate::{helpers::*, on_every_store};

/// Readers of one session keep asking `/auth/user` (each read may miss the
/// cache and fill it from the store) while the session is signed out. Every
/// read that starts after the sign-out has answered must get 401: no read
/// that was in flight during it may put the session back.
async fn reads_racing_a_sign_out_never_revive_it(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let idp = Idp::start().await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("SESSION_STORE", store.url.as_str()),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    )
    .await;
    for round in 0..5 {
        let browser = app.second_browser();
        assert_eq!(
            browser.login("alice", "alice").await.status(),
            StatusCode::SEE_OTHER
        );
        let cookie = Arc::new(browser.session_cookie().unwrap());
        let ended = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (app, cookie, ended) = (app.second_browser(), cookie.clone(), ended.clone());
            readers.push(tokio::spawn(async move {
                let mut revived = Vec::new();
                let mut reads = 0;
                // Until a few reads after the end have been seen.
                let mut after = 0;
                while after < 20 {
                    let started_after_end = ended.load(Ordering::SeqCst);
                    let status = app
                        .get_json_with_cookie(&cookie, "/auth/user")
                        .await
                        .status();
                    reads += 1;
                    if started_after_end {
                        after += 1;
                        if status != StatusCode::UNAUTHORIZED {
                            revived.push(status);
                        }
                    }
                }
                (reads, revived)
            }));
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(browser.logout().await.status(), StatusCode::SEE_OTHER);
        ended.store(true, Ordering::SeqCst);
        for reader in readers {
            let (reads, revived) = reader.await.unwrap();
            assert!(
                reads > 20,
                "{kind:?} round {round}: the reads overlapped the sign-out"
            );
            assert!(
                revived.is_empty(),
                "{kind:?} round {round}: reads after the sign-out answered {revived:?}"
            );
        }
    }
}

// A session rewritten on the same instance (new tokens and roles after a
// refresh) is covered on every store by `roles::a_role_removed_at_the_idp_…`:
// a stale copy there would present a rotated-out refresh token and end the
// session.
on_every_store!(reads_racing_a_sign_out_never_revive_it);

/// A SQLite store belongs to one process (it trusts its cache because every
/// write is its own): a second process on the same file refuses to start,
/// saying why, instead of serving sessions the first one has ended.
#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_refuses_to_start() {
    let store = TestStore::start(StoreKind::Sqlite).await;
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );

    let port = free_port();
    let binary = crate::embed::example_binary();
    let output = Command::new(&binary)
        .env("APP_BASE_URL", format!("http://localhost:{port}"))
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("OIDC_ISSUER_URL", &idp.issuer)
        .env("SESSION_STORE", &store.url)
        .env("APP_DATABASE_URL", "sqlite::memory:")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} (built by cargo test): {e}", binary.display()));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the second process started: {said}"
    );
    assert!(
        said.contains(&format!("another process (pid {})", std::process::id()))
            && said.contains("run several instances on Redis or Postgres"),
        "it says who holds the store and what to do instead: {said}"
    );
    // The first one is unaffected.
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}
