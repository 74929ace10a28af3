//! What only Postgres does among the shared stores (what every shared store
//! does is in `instances.rs`): its listening connection cut and remade
//! without an end being missed, a store that refuses queries answered with
//! one error code, and a password kept out of every message.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    events::{open_stream, watch},
    helpers::*,
};

/// Runs `sql` as the server's superuser on the database at `url`.
async fn as_superuser(url: &str, sql: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Instance b's connection that listens for ended sessions is cut, and a
/// sign-out on a lands while b has none (nobody hears the notification):
/// b's tab still hears the end within 2 s, because b, once listening
/// again, has every stream re-check its session.
#[tokio::test]
async fn an_end_made_while_the_listener_is_cut_still_reaches_the_tab() {
    let store = TestStore::start(StoreKind::Postgres).await;
    let idp = Idp::start().await;
    let settings = [("SESSION_STORE", store.url.as_str())];
    let a = spawn_app_with(&idp.issuer, &settings).await;
    let b = spawn_app_with(&idp.issuer, &settings).await;
    a.login("alice", "alice").await;
    let watcher = watch(open_stream(&a, &b).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every listening connection ends (a's and b's), the sign-out follows
    // at once, before they are remade (100 ms later at the earliest).
    as_superuser(
        &store.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .await;
    let signed_out = std::time::Instant::now();
    assert_eq!(a.logout().await.status(), StatusCode::SEE_OTHER);
    assert!(watcher.await.unwrap().is_some(), "b's tab hears the end");
    assert!(
        signed_out.elapsed() < Duration::from_secs(2),
        "{:?}",
        signed_out.elapsed()
    );
}

/// A Postgres store that refuses every query (its tables taken away from
/// the app's role) answers 503 `session_store_unavailable` — never the
/// database's own words, never "signed out" — and the session is back as
/// soon as the store is.
#[tokio::test]
async fn a_failing_store_is_one_code_and_ends_nothing() {
    let store = TestStore::start(StoreKind::Postgres).await;
    // The app's own role, owner of its database (the tests' superuser can
    // take its tables away).
    as_superuser(
        &store.url,
        "DO $$ BEGIN CREATE ROLE gatehouse_app LOGIN;
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .await;
    let database = store.url.rsplit('/').next().unwrap();
    as_superuser(
        &store.url,
        &format!("ALTER DATABASE {database} OWNER TO gatehouse_app"),
    )
    .await;
    let app_url = store.url.replacen("postgres@", "gatehouse_app@", 1);
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_STORE", app_url.as_str())]).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);

    as_superuser(
        &store.url,
        "ALTER TABLE gatehouse_sessions OWNER TO postgres",
    )
    .await;
    for path in ["/auth/user", "/api/notes"] {
        let response = app.get_json(path).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("permission"), "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"], "session_store_unavailable", "{path}: {body}");
    }
    let logout = app.logout().await;
    assert_eq!(logout.status(), StatusCode::SERVICE_UNAVAILABLE);

    as_superuser(
        &store.url,
        "ALTER TABLE gatehouse_sessions OWNER TO gatehouse_app",
    )
    .await;
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::OK,
        "the session outlived the outage"
    );
}

/// A Postgres URL's password — in its userinfo or as `?password=` — never
/// reaches a message (start-up errors are printed and logged).
#[tokio::test]
async fn a_postgres_password_never_appears_in_a_store_error() {
    use gatehouse::{
        auth::session::index_entry,
        server::{clock::Clock, config::StoreUrl, store::AnyStore},
    };
    let closed = free_port();
    for raw in [
        format!("postgres://user:hunter2@127.0.0.1:{closed}/sessions"),
        format!("postgres://user@127.0.0.1:{closed}/sessions?password=hunter2"),
    ] {
        let url = StoreUrl::Postgres(raw.parse().unwrap());
        let open = AnyStore::open(&url, Duration::from_secs(60), index_entry, Clock::system());
        let err = tokio::time::timeout(Duration::from_secs(30), open)
            .await
            .expect("a refused connection fails promptly")
            .unwrap_err();
        assert!(err.contains("SESSION_STORE=postgres://user"), "{err}");
        assert!(err.contains("***"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
