//! The BFF core is a real boundary: `examples/embed.rs`, a plain axum app of
//! its own (no Leptos), signs users in through it against the real dev IdP
//! and guards its handlers with `CurrentUser` and `RequireRole<Admin>`.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;

use crate::helpers::*;

/// The example's binary, built by `cargo test` beside this test binary.
pub fn example_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile_dir = deps.parent().unwrap().parent().unwrap();
    profile_dir.join("examples").join("embed")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_plain_axum_app_signs_in_through_the_core() {
    let idp = Idp::start().await;
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let binary = example_binary();
    let child = Command::new(&binary)
        .env("APP_BASE_URL", &base)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("OIDC_ISSUER_URL", &idp.issuer)
        .env("SESSION_STORE", "memory")
        .env("APP_DATABASE_URL", "sqlite::memory:")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} (built by cargo test): {e}", binary.display()));
    let _running = Running(child);
    let app = TestApp::at(&base);
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = app.http.get(app.url("/")).send().await {
            up = r.status() == StatusCode::OK;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the example app did not start");

    assert_eq!(app.get("/me").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/admin").await.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    let me = app.get("/me").await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.text().await.unwrap(), "Hello, Alice Liddell");
    let admin = app.get("/admin").await;
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(
        admin.text().await.unwrap(),
        "embed: admin area for Alice Liddell"
    );

    let bob = app.second_browser();
    assert_eq!(
        bob.login("bob", "bob").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(bob.get("/me").await.status(), StatusCode::OK);
    assert_eq!(bob.get("/admin").await.status(), StatusCode::FORBIDDEN);
}
