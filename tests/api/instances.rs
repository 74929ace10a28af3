//! Several Gatehouse instances sharing one real store — Redis or Postgres,
//! the two that may be shared: a session made on one is used and ended on
//! another, a sign-out on one reaches the tabs another holds, refresh stays
//! single-flight across them, back-channel logout and its replay cache are
//! shared, no instance serves a copy of a session another instance has
//! rewritten, and a refresh lock is freed when the instance holding it dies.

use std::time::Duration;

use reqwest::{header, StatusCode};
use serde_json::Value;

use crate::{
    events::{open_stream, watch},
    helpers::*,
};

/// Runs each named `async fn(StoreKind)` once per store several instances
/// may share: `<name>::redis`, `<name>::postgres`.
macro_rules! on_shared_stores {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use $crate::helpers::StoreKind;
            #[tokio::test]
            async fn redis() {
                super::$test(StoreKind::Redis).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$test(StoreKind::Postgres).await
            }
        }
    )*};
}

/// Two instances sharing one real store, and the dev IdP they sign in with
/// (started with `idp_env`). Bind every field: one left to `..` is dropped
/// at once, and with it its server.
struct Pair {
    store: TestStore,
    idp: Idp,
    a: TestApp,
    b: TestApp,
}

async fn two_instances(kind: StoreKind, idp_env: &[(&str, &str)]) -> Pair {
    let store = TestStore::start(kind).await;
    let idp = Idp::start_with(idp_env).await;
    let settings = [("SESSION_STORE", store.url.as_str())];
    let a = spawn_app_with(&idp.issuer, &settings).await;
    let b = spawn_app_with(&idp.issuer, &settings).await;
    Pair { store, idp, a, b }
}

async fn user_status(client: &TestApp, app: &TestApp) -> StatusCode {
    client.get_json_at(app, "/auth/user").await.status()
}

async fn a_session_made_on_one_instance_works_and_ends_on_another(kind: StoreKind) {
    let Pair { store, idp, a, b } = two_instances(kind, &[]).await;
    assert_eq!(
        a.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );

    // Cookies ignore ports, so the same browser (a's jar) reaches b with the cookie.
    let response = a.get_json_at(&b, "/auth/user").await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["name"], "Alice Liddell");

    // A third instance started now (a restart) sees it too.
    let c = spawn_app_with(&idp.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    assert_eq!(user_status(&a, &c).await, StatusCode::OK);

    // Logout through b ends it everywhere.
    let logout = a
        .http
        .post(b.url("/auth/logout"))
        .header(header::ORIGIN, &b.base)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(user_status(&a, &a).await, StatusCode::UNAUTHORIZED);
    assert_eq!(user_status(&a, &c).await, StatusCode::UNAUTHORIZED);
}

async fn refresh_is_single_flight_across_instances(kind: StoreKind) {
    let Pair {
        store: _store,
        idp,
        a,
        b,
    } = two_instances(kind, &[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
    a.login("bob", "bob").await;
    // The token has expired for both instances (one store, two clocks).
    a.wait(Duration::from_secs(61));
    b.wait(Duration::from_secs(61));

    let calls = (0..50).map(|i| {
        let target = if i % 2 == 0 { &a } else { &b };
        a.http
            .get(target.url("/auth/userinfo"))
            .header("X-CSRF", "1")
            .send()
    });
    for response in futures::future::join_all(calls).await {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
    let refreshes = idp.stats().await["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap();
    assert_eq!(refreshes, 1, "50 calls over two instances, one refresh");
}

async fn back_channel_logout_reaches_every_instance_and_is_not_replayable_on_another(
    kind: StoreKind,
) {
    use crate::hostile_idp::{login_at, start_op, Defect, OP_KEY};
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    let store = TestStore::start(kind).await;
    let op = start_op(Defect::None).await;
    let settings = [("SESSION_STORE", store.url.as_str())];
    let a = spawn_app_with(&op.issuer, &settings).await;
    let b = spawn_app_with(&op.issuer, &settings).await;
    assert_eq!(login_at(&op, &a).await.status(), StatusCode::SEE_OTHER);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": op.issuer, "aud": "gatehouse", "iat": now, "exp": now + 120, "jti": "shared-1",
        "sub": "mallory", "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    let mut head = Header::new(Algorithm::RS256);
    head.kid = Some("op-key".into());
    let token = encode(
        &head,
        &claims,
        &EncodingKey::from_rsa_pem(OP_KEY.as_bytes()).unwrap(),
    )
    .unwrap();
    let post = |app: &TestApp| {
        reqwest::Client::new()
            .post(app.url("/auth/backchannel-logout"))
            .form(&[("logout_token", token.clone())])
            .send()
    };
    assert_eq!(post(&b).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        user_status(&a, &a).await,
        StatusCode::UNAUTHORIZED,
        "ended on the other instance"
    );
    assert_eq!(
        post(&a).await.unwrap().status(),
        StatusCode::BAD_REQUEST,
        "jti replay on another instance"
    );
}

/// A tab's `/auth/events` stream held by instance b hears a sign-out made on
/// instance a within 2 s (a's delete publishes it on Redis, or notifies it
/// on Postgres; b listens), and while it waits, no instance reads Redis:
/// the stream is pushed, not polled.
async fn a_sign_out_on_one_instance_reaches_the_tabs_another_holds(kind: StoreKind) {
    let Pair {
        store,
        idp: _idp,
        a,
        b,
    } = two_instances(kind, &[]).await;
    a.login("alice", "alice").await;
    let watcher = watch(open_stream(&a, &b).await);

    if let Some(redis) = store.redis() {
        // Idle: not one Redis command in 2 s (it was an MGET per tab per second).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = redis.commands_run();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            redis.commands_run(),
            before,
            "commands while the tab was idle"
        );
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        !watcher.is_finished(),
        "no event while the session is alive"
    );

    let signed_out = std::time::Instant::now();
    assert_eq!(a.logout().await.status(), StatusCode::SEE_OTHER);
    assert!(watcher.await.unwrap().is_some(), "b's tab hears the end");
    assert!(
        signed_out.elapsed() < Duration::from_secs(2),
        "{:?}",
        signed_out.elapsed()
    );
}

/// Instance `a` has read (and keeps) a session; instance `b` rewrites it.
/// `a` must then serve `b`'s revision (on Redis `b`'s write returns only
/// once `a` has heard of it, `lease.rs`; on Postgres every read asks for
/// the revision, `postgres.rs`).
async fn an_instance_never_serves_a_copy_another_instance_has_rewritten(kind: StoreKind) {
    let Pair {
        store: _store,
        idp: _idp,
        a,
        b,
    } = two_instances(kind, &[]).await;
    a.login("alice", "alice").await;
    let on_a = idle_deadline(&a, &a).await;
    // Two minutes pass for b only: its keep-alive writes a new revision.
    b.wait(Duration::from_secs(120));
    let on_b = idle_deadline(&a, &b).await;
    assert!(on_b > on_a, "b rewrote the session");
    assert_eq!(
        idle_deadline(&a, &a).await,
        on_b,
        "a serves the revision b wrote, not the copy it kept"
    );
}

on_shared_stores!(
    a_session_made_on_one_instance_works_and_ends_on_another,
    refresh_is_single_flight_across_instances,
    back_channel_logout_reaches_every_instance_and_is_not_replayable_on_another,
    a_sign_out_on_one_instance_reaches_the_tabs_another_holds,
    an_instance_never_serves_a_copy_another_instance_has_rewritten,
);

/// A refresh lock is held for as long as its holder works, however long
/// (longer than the lock's TTL on Redis, where a watchdog extends it), so
/// a second instance cannot start a second refresh of the same session;
/// released, it is free at once; and on Postgres, if its holder dies
/// instead (its connections cut: the lock lives in one), it is free too.
async fn a_refresh_lock_lasts_as_long_as_its_holder(kind: StoreKind) {
    use gatehouse::{
        auth::session::index_entry,
        server::{clock::Clock, config::StoreUrl, store::AnyStore},
    };
    let store = TestStore::start(kind).await;
    let url = match kind {
        StoreKind::Redis => StoreUrl::Redis(store.url.parse().unwrap()),
        _ => StoreUrl::Postgres(store.url.parse().unwrap()),
    };
    let ttl = Duration::from_millis(300);
    let open = || async {
        AnyStore::open(
            &url,
            Duration::from_secs(3600),
            index_entry,
            Clock::system(),
        )
        .await
        .unwrap()
        .with_lock_ttl(ttl)
    };
    let (a, b) = (open().await, open().await);
    let free_for_b = |name: &'static str| {
        let b = b.clone();
        async move {
            for _ in 0..100 {
                if let Ok(Some(lock)) = b.try_lock_session(name).await {
                    return Some(lock);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        }
    };

    let held = a
        .try_lock_session("s1")
        .await
        .unwrap()
        .expect("free at first");
    tokio::time::sleep(ttl * 4).await;
    assert!(
        b.try_lock_session("s1").await.unwrap().is_none(),
        "the lock expired while its holder was still working"
    );
    drop(held);
    assert!(
        free_for_b("s1").await.is_some(),
        "released when its holder drops it"
    );

    // On Postgres the holder dies without releasing anything: every
    // connection of the database but the one asking ends (a Redis lock of a
    // dead holder runs out with its TTL, which its watchdog no longer
    // extends: not something a test can kill in-process).
    if kind == StoreKind::Postgres {
        let held = a
            .try_lock_session("s2")
            .await
            .unwrap()
            .expect("free at first");
        assert!(b.try_lock_session("s2").await.unwrap().is_none());
        let killer = sqlx::PgPool::connect(&store.url).await.unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&killer)
        .await
        .unwrap();
        killer.close().await;
        assert!(
            free_for_b("s2").await.is_some(),
            "a dead holder's lock stayed held"
        );
        drop(held);
    }
}

on_shared_stores!(a_refresh_lock_lasts_as_long_as_its_holder);
