//! Session records sealed at rest (`SESSION_ENCRYPTION_KEY`), on the stores
//! that keep them outside the process: what the SQLite file or Redis holds
//! names no user and carries no token, sessions keep working, a new key
//! listed first leaves the old sessions readable, and a store read without
//! the key that sealed them has no sessions (fail closed).

use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::*;

/// Two keys, as `openssl rand -base64 32` prints them.
const OLD: &str = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=";
const NEW: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

/// Every value the store holds, as bytes.
async fn stored_values(kind: StoreKind, store: &TestStore) -> Vec<Vec<u8>> {
    match kind {
        StoreKind::Sqlite => {
            use sqlx::Row;
            let pool = sqlx::SqlitePool::connect(&store.url).await.unwrap();
            let rows = sqlx::query("SELECT data FROM gatehouse_sessions")
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.iter().map(|r| r.get::<Vec<u8>, _>("data")).collect()
        }
        StoreKind::Redis => {
            let cli = |args: &[&str]| {
                Command::new("redis-cli")
                    .args(["-u", &store.url, "--raw"])
                    .args(args)
                    .output()
                    .expect("redis-cli")
                    .stdout
            };
            let keys = String::from_utf8(cli(&["KEYS", "*"])).unwrap();
            keys.lines()
                .filter(|k| !k.is_empty())
                .map(|k| cli(&["GET", k]))
                .collect()
        }
        StoreKind::Memory => unreachable!("the memory store keeps nothing at rest"),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An app with these keys (`None`: none set) on what `store` holds now: the
/// same Redis, or a copy of the SQLite file, as a backup or a stolen copy
/// would be (this process keeps the records of a file it has open, so
/// another app on the same file would not read them from disk).
async fn app_on(idp: &Idp, store: &TestStore, keys: Option<&str>) -> TestApp {
    let url = match store.url.strip_prefix("sqlite://") {
        Some(path) => {
            let copy = format!("{path}.copy-{}", free_port());
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::copy(format!("{path}{suffix}"), format!("{copy}{suffix}"));
            }
            format!("sqlite://{copy}")
        }
        None => store.url.clone(),
    };
    let mut settings = vec![("SESSION_STORE", url.as_str())];
    if let Some(keys) = keys {
        settings.push(("SESSION_ENCRYPTION_KEY", keys));
    }
    spawn_app_with(&idp.issuer, &settings).await
}

async fn records_are_sealed_at_rest_and_open_with_a_listed_key(kind: StoreKind) {
    let idp = Idp::start().await;
    let store = TestStore::start(kind).await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("SESSION_STORE", store.url.as_str()),
            ("SESSION_ENCRYPTION_KEY", OLD),
        ],
    )
    .await;
    app.login("alice", "alice").await;
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);

    let values = stored_values(kind, &store).await;
    assert!(
        values
            .iter()
            .any(|v| v.starts_with(b"gh1\0") && v.len() > 1000),
        "a sealed record is stored"
    );
    for value in &values {
        for plain in ["alice", "Alice", "eyJ", "access_token", "refresh_token"] {
            assert!(!contains(value, plain), "{plain:?} at rest in {kind:?}");
        }
    }

    // The next key listed first: the old sessions still open.
    let rotated = app_on(&idp, &store, Some(&format!("{NEW},{OLD}"))).await;
    assert_eq!(
        app.get_json_at(&rotated, "/auth/user").await.status(),
        StatusCode::OK
    );
    // The old key dropped, or no key at all: those sessions are gone.
    for keys in [Some(NEW), None] {
        let other = app_on(&idp, &store, keys).await;
        assert_eq!(
            app.get_json_at(&other, "/auth/user").await.status(),
            StatusCode::UNAUTHORIZED,
            "{keys:?}"
        );
    }
}

#[tokio::test]
async fn sqlite_records_are_sealed_at_rest() {
    records_are_sealed_at_rest_and_open_with_a_listed_key(StoreKind::Sqlite).await;
}

#[tokio::test]
async fn redis_records_are_sealed_at_rest() {
    records_are_sealed_at_rest_and_open_with_a_listed_key(StoreKind::Redis).await;
}
