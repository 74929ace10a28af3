//! Session records sealed at rest, on the stores that keep them outside the
//! process (SQLite, Redis, Postgres).
//!
//! - With each session's own key (`SESSION_KEY_IN_COOKIE`, the default):
//!   what the store holds carries no cookie id and no token; no key it holds
//!   signs in; a copy of it, with the deployment's whole configuration,
//!   opens a session only for the browser holding that session's cookie.
//! - With the deployment key too (`SESSION_ENCRYPTION_KEY`): the store names
//!   no user, browser or address either, sessions keep working, a new key
//!   listed first leaves the old sessions readable, and a store read
//!   without the key that sealed them has no sessions (fail closed).

use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::*;

/// Two keys, as `openssl rand -base64 32` prints them.
const OLD: &str = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=";
const NEW: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

/// Every value the store holds, as bytes.
async fn stored_values(kind: StoreKind, store: &TestStore) -> Vec<Vec<u8>> {
    stored(kind, store)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// Every (key, value) the store holds: SQLite's session rows with their
/// index columns, every Redis key (records, revisions, index entries and
/// sets, locks).
async fn stored(kind: StoreKind, store: &TestStore) -> Vec<(String, Vec<u8>)> {
    match kind {
        StoreKind::Sqlite => {
            use sqlx::Row;
            let pool = sqlx::SqlitePool::connect(&store.url).await.unwrap();
            let rows = sqlx::query(
                "SELECT id, data, COALESCE(sub, '') AS sub, COALESCE(sid, '') AS sid
                 FROM gatehouse_sessions",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            rows.iter()
                .map(|r| {
                    let mut value = r.get::<Vec<u8>, _>("data");
                    value.extend(r.get::<String, _>("sub").into_bytes());
                    value.extend(r.get::<String, _>("sid").into_bytes());
                    (r.get::<String, _>("id"), value)
                })
                .collect()
        }
        StoreKind::Postgres => {
            use sqlx::Row;
            let pool = sqlx::PgPool::connect(&store.url).await.unwrap();
            let mut rows: Vec<(String, Vec<u8>)> = sqlx::query(
                "SELECT id, data, COALESCE(sub, '') AS sub, COALESCE(sid, '') AS sid
                 FROM gatehouse_sessions",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let mut value = r.get::<Vec<u8>, _>("data");
                value.extend(r.get::<String, _>("sub").into_bytes());
                value.extend(r.get::<String, _>("sid").into_bytes());
                (r.get::<String, _>("id"), value)
            })
            .collect();
            let jtis: Vec<String> = sqlx::query_scalar("SELECT key FROM gatehouse_jtis")
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.extend(jtis.into_iter().map(|k| (k.clone(), k.into_bytes())));
            pool.close().await;
            rows
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
                .map(|k| {
                    let kind = String::from_utf8(cli(&["TYPE", k])).unwrap();
                    let value = match kind.trim() {
                        "set" => cli(&["SMEMBERS", k]),
                        "zset" => cli(&["ZRANGE", k, "0", "-1"]),
                        _ => cli(&["GET", k]),
                    };
                    (k.to_string(), value)
                })
                .collect()
        }
        StoreKind::Memory => unreachable!("the memory store keeps nothing at rest"),
    }
}

/// A JWT in the clear (`eyJ…`, three dot-separated parts), not three bytes
/// of ciphertext that happen to read `eyJ` (about once in 3,000 records of
/// 5 KiB: it failed a run once).
fn holds_jwt(value: &[u8]) -> bool {
    contains_jwt(&String::from_utf8_lossy(value))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A copy of the SQLite file (the same Redis or Postgres database).
fn copy_of(store: &TestStore) -> String {
    match store.url.strip_prefix("sqlite://") {
        Some(path) => {
            let copy = format!("{path}.copy-{}", free_port());
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::copy(format!("{path}{suffix}"), format!("{copy}{suffix}"));
            }
            format!("sqlite://{copy}")
        }
        None => store.url.clone(),
    }
}

/// An app with these keys (`None`: none set) on what `store` holds now: the
/// same Redis, or a copy of the SQLite file, as a backup or a stolen copy
/// would be (this process keeps the records of a file it has open, so
/// another app on the same file would not read them from disk).
async fn app_on(idp: &Idp, store: &TestStore, keys: Option<&str>) -> TestApp {
    let url = copy_of(store);
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
            .any(|v| v.starts_with(b"gh2\0") && v.len() > 1000),
        "a sealed record is stored"
    );
    for value in &values {
        // With the deployment key, not even the listing facts read.
        assert!(!holds_jwt(value), "a token at rest in {kind:?}");
        for plain in [
            "alice",
            "Alice",
            "access_token",
            "refresh_token",
            "127.0.0.1",
            "Mozilla",
        ] {
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

#[tokio::test]
async fn postgres_records_are_sealed_at_rest() {
    records_are_sealed_at_rest_and_open_with_a_listed_key(StoreKind::Postgres).await;
}

/// The default (no `SESSION_ENCRYPTION_KEY`): each record sealed with its
/// own cookie's key. A copy of the store — here with the deployment's whole
/// configuration too — holds no cookie id and no token, and none of its keys
/// signs in; only the browser holding a session's cookie opens that session,
/// on any instance.
async fn a_copy_of_the_store_holds_no_cookie_and_no_token(kind: StoreKind) {
    let idp = Idp::start().await;
    let store = TestStore::start(kind).await;
    let laptop = spawn_app_with(&idp.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    let phone = laptop.second_browser();
    laptop.login("alice", "alice").await;
    phone.login("alice", "alice").await;
    // Let a refresh lock and a few renewals be written too.
    assert_eq!(laptop.get_json("/auth/user").await.status(), StatusCode::OK);
    let cookies = [
        laptop.session_cookie().unwrap(),
        phone.session_cookie().unwrap(),
    ];

    let stored = stored(kind, &store).await;
    assert!(
        stored
            .iter()
            .filter(|(_, v)| v.starts_with(b"gh2\0") && v.len() > 1000)
            .count()
            == 2,
        "two records sealed with their own keys"
    );
    for (key, value) in &stored {
        for cookie in &cookies {
            assert!(
                !key.contains(cookie.as_str()) && !contains(value, cookie),
                "a cookie id at rest in {kind:?}: {key}"
            );
        }
        assert!(!holds_jwt(value), "a token at rest in {kind:?}");
        for plain in ["Alice", "access_token", "refresh_token"] {
            assert!(!contains(value, plain), "{plain:?} at rest in {kind:?}");
        }
    }

    // The copy, opened by an app with the same configuration.
    let copy = app_on(&idp, &store, None).await;
    let thief = copy.second_browser();
    let url = url::Url::parse(&copy.url("/")).unwrap();
    for (key, _) in &stored {
        for candidate in key.split(':') {
            thief
                .jar
                .add_cookie_str(&format!("gatehouse_session={candidate}; Path=/"), &url);
            assert_eq!(
                thief.get_json("/auth/user").await.status(),
                StatusCode::UNAUTHORIZED,
                "{kind:?}: the stored key {key} signs in"
            );
        }
    }
    // The browser holding the cookie still opens its session there.
    assert_eq!(
        laptop.get_json_at(&copy, "/auth/user").await.status(),
        StatusCode::OK
    );
    // A store that does not key by cookie reads none of it (fail closed).
    let server_keyed = spawn_app_with(
        &idp.issuer,
        &[
            ("SESSION_STORE", copy_of(&store).as_str()),
            ("SESSION_KEY_IN_COOKIE", "0"),
        ],
    )
    .await;
    assert_eq!(
        laptop
            .get_json_at(&server_keyed, "/auth/user")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sqlite_holds_no_cookie_and_no_token() {
    a_copy_of_the_store_holds_no_cookie_and_no_token(StoreKind::Sqlite).await;
}

#[tokio::test]
async fn redis_holds_no_cookie_and_no_token() {
    a_copy_of_the_store_holds_no_cookie_and_no_token(StoreKind::Redis).await;
}

#[tokio::test]
async fn postgres_holds_no_cookie_and_no_token() {
    a_copy_of_the_store_holds_no_cookie_and_no_token(StoreKind::Postgres).await;
}
