//! Several Gatehouse instances sharing one real Redis: a session made on one is
//! used and ended on the other, a sign-out on one reaches the tabs another
//! holds, refresh stays single-flight across them, back-channel logout and
//! its replay cache are shared, and no instance serves its kept copy of a
//! session another instance has rewritten.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use reqwest::{header, StatusCode};
use serde_json::Value;

use crate::{
    events::{open_stream, watch},
    helpers::*,
};

/// Two instances sharing one real Redis, and the dev IdP they sign in with
/// (started with `idp_env`).
pub struct Pair {
    pub redis: Redis,
    pub idp: Idp,
    pub a: TestApp,
    pub b: TestApp,
}

pub async fn two_instances(idp_env: &[(&str, &str)]) -> Pair {
    let redis = Redis::start().await;
    let idp = Idp::start_with(idp_env).await;
    let store = [("SESSION_STORE", redis.url.as_str())];
    let a = spawn_app_with(&idp.issuer, &store).await;
    let b = spawn_app_with(&idp.issuer, &store).await;
    Pair { redis, idp, a, b }
}

async fn user_status(client: &TestApp, app: &TestApp) -> StatusCode {
    client.get_json_at(app, "/auth/user").await.status()
}

#[tokio::test]
async fn a_session_made_on_one_instance_works_and_ends_on_another() {
    let Pair { redis, idp, a, b } = two_instances(&[]).await;
    let store = [("SESSION_STORE", redis.url.as_str())];
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
    let c = spawn_app_with(&idp.issuer, &store).await;
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

#[tokio::test]
async fn refresh_is_single_flight_across_instances() {
    let Pair {
        redis: _redis,
        idp,
        a,
        b,
    } = two_instances(&[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
    a.login("bob", "bob").await;
    // The token has expired for both instances (one Redis, two clocks).
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

#[tokio::test]
async fn back_channel_logout_reaches_every_instance_and_is_not_replayable_on_another() {
    use crate::hostile_idp::{login_at, start_op, Defect, OP_KEY};
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    let redis = Redis::start().await;
    let op = start_op(Defect::None).await;
    let store = [("SESSION_STORE", redis.url.as_str())];
    let a = spawn_app_with(&op.issuer, &store).await;
    let b = spawn_app_with(&op.issuer, &store).await;
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

/// A refresh lock outlives the work it guards: held longer than its TTL (an
/// IdP answer slower than the TTL), it is still held, so a second instance
/// cannot start a second refresh of the same session; released, it is free.
#[tokio::test]
async fn a_held_session_lock_outlives_its_ttl() {
    use gatehouse::{
        auth::session::index_entry,
        server::{clock::Clock, config::StoreUrl, store::AnyStore},
    };
    let redis = Redis::start().await;
    let url = StoreUrl::Redis(redis.url.parse().unwrap());
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
    let mut free = None;
    for _ in 0..50 {
        free = b.try_lock_session("s1").await.unwrap();
        if free.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(free.is_some(), "released when its holder drops it");
}

/// A Redis URL's password never reaches a message (start-up errors are
/// printed and logged).
#[tokio::test]
async fn a_redis_password_never_appears_in_a_store_error() {
    use gatehouse::{
        auth::session::index_entry,
        server::{clock::Clock, config::StoreUrl, store::AnyStore},
    };
    let closed = free_port();
    let url = StoreUrl::Redis(
        format!("redis://user:hunter2@127.0.0.1:{closed}")
            .parse()
            .unwrap(),
    );
    let open = AnyStore::open(&url, Duration::from_secs(60), index_entry, Clock::system());
    let err = tokio::time::timeout(Duration::from_secs(30), open)
        .await
        .expect("a refused connection fails promptly")
        .unwrap_err();
    assert!(
        err.contains("SESSION_STORE=redis://user:***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

/// A session store that fails reads the same on every path: 503
/// `session_store_unavailable` from the JSON routes, the `/api/*` guard and
/// the server functions alike (one code per meaning), the store's own words
/// never reach the client, and nothing is ended by it.
#[tokio::test]
async fn a_failing_store_is_one_code_on_every_path() {
    use gatehouse::{
        components::session_watch::StaySignedIn,
        pages::{admin::AdminOverview, sessions::MySessions},
    };
    use leptos::server_fn::ServerFn;

    let redis = Redis::start().await;
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_STORE", redis.url.as_str())]).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    async fn store_down(what: &str, response: reqwest::Response) {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("NOPERM"), "{what}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"], "session_store_unavailable", "{what}: {body}");
    }

    // The session itself reads, the list of a user's sessions does not.
    assert!(redis
        .command(&["ACL", "SETUSER", "default", "-smembers"])
        .await
        .starts_with("+OK"));
    store_down(
        "my_sessions",
        app.server_fn(<MySessions as ServerFn>::PATH, &[]).await,
    )
    .await;
    store_down(
        "admin_overview",
        app.server_fn(<AdminOverview as ServerFn>::PATH, &[]).await,
    )
    .await;
    store_down("/api/admin/users", app.get_json("/api/admin/users").await).await;

    // Nothing reads at all.
    assert!(redis
        .command(&["ACL", "SETUSER", "default", "-@all", "+acl"])
        .await
        .starts_with("+OK"));
    // A copy kept under the instance's lease is still what Redis holds (no
    // change can be made anywhere without reaching it), so for up to the
    // lease (100 ms, `lease.rs`) the session may still be served; the lease
    // cannot be renewed now, and once it runs out every read asks Redis.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    store_down("/auth/user", app.get_json("/auth/user").await).await;
    store_down("/api/notes", app.get_json("/api/notes").await).await;
    store_down(
        "my_sessions",
        app.server_fn(<MySessions as ServerFn>::PATH, &[]).await,
    )
    .await;
    // Not "your session ended": the tab keeps its warning and may retry.
    store_down(
        "stay_signed_in",
        app.server_fn(<StaySignedIn as ServerFn>::PATH, &[]).await,
    )
    .await;
    store_down("/auth/logout", app.logout().await).await;

    assert!(redis
        .command(&["ACL", "SETUSER", "default", "+@all"])
        .await
        .starts_with("+OK"));
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::OK,
        "the session outlived the outage"
    );
}

/// A tab's `/auth/events` stream held by instance b hears a sign-out made on
/// instance a within 2 s (a's delete publishes it; b is subscribed), and
/// while it waits, no instance reads the store: the stream is pushed, not
/// polled.
#[tokio::test]
async fn a_sign_out_on_one_instance_reaches_the_tabs_another_holds() {
    let Pair {
        redis,
        idp: _idp,
        a,
        b,
    } = two_instances(&[]).await;
    a.login("alice", "alice").await;
    let watcher = watch(open_stream(&a, &b).await);

    // Idle: not one Redis command in 2 s (it was an MGET per tab per second).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = redis.commands_run();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        redis.commands_run(),
        before,
        "commands while the tab was idle"
    );
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

/// The idle deadline `app` reports for `browser`'s session.
async fn idle_deadline(browser: &TestApp, app: &TestApp) -> i64 {
    let response = browser.get_json_at(app, "/auth/user").await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    user["session"]["idle_expires_at"].as_i64().unwrap()
}

/// Instance `a` has read (and keeps) a session; instance `b` rewrites it.
/// `a` must then serve `b`'s revision: `b`'s write returns only once `a`
/// has heard of it (`lease.rs`).
#[tokio::test]
async fn an_instance_never_serves_a_copy_another_instance_has_rewritten() {
    let Pair {
        redis: _redis,
        idp: _idp,
        a,
        b,
    } = two_instances(&[]).await;
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

/// A TCP relay to Redis that can hold back Redis' answers on subscription
/// connections (those that sent SUBSCRIBE) while every other connection
/// goes on: a network that silently stops delivering to one connection,
/// which stays open.
struct StallingRelay {
    url: String,
    stalled: Arc<AtomicBool>,
}

impl StallingRelay {
    async fn start(redis_url: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = redis_url.trim_start_matches("redis://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let stalled = Arc::new(AtomicBool::new(false));
        let stall = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let subscriber = Arc::new(AtomicBool::new(false));
                let marks = subscriber.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        let sent = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                        if sent.contains("SUBSCRIBE") {
                            marks.store(true, Ordering::SeqCst);
                        }
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let stall = stall.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        while subscriber.load(Ordering::SeqCst) && stall.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { url, stalled }
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }
}

/// The hard case of serving kept sessions without asking Redis: instance
/// `b` keeps a copy under its lease when its subscription goes silent (no
/// message, no ping answer reaches it; the connection stays open). A
/// sign-out on `a` cannot be acknowledged by `b`, so it returns only once
/// `b`'s entry in the roll call, and with it `b`'s lease, has run out:
/// right after it, `b` refuses the session. (Without that wait, `b` serves
/// the ended session for up to its lease.)
#[tokio::test]
async fn a_sign_out_waits_out_an_instance_that_stopped_hearing() {
    let redis = Redis::start().await;
    let idp = Idp::start().await;
    let relay = StallingRelay::start(&redis.url).await;
    let a = spawn_app_with(&idp.issuer, &[("SESSION_STORE", redis.url.as_str())]).await;
    let b = spawn_app_with(&idp.issuer, &[("SESSION_STORE", relay.url.as_str())]).await;
    a.login("alice", "alice").await;
    for _ in 0..5 {
        // b keeps the session and a lease.
        assert_eq!(user_status(&a, &b).await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let cookie = a.session_cookie().expect("signed in");
    relay.stall(true);
    assert_eq!(a.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        b.get_json_with_cookie(&cookie, "/auth/user").await.status(),
        StatusCode::UNAUTHORIZED,
        "b served a session a had ended"
    );

    // Heard again: b takes a new lease, with nothing kept from before, and
    // a sign-out is acknowledged at once.
    relay.stall(false);
    a.login("alice", "alice").await;
    let cookie = a.session_cookie().expect("signed in");
    for _ in 0..3 {
        assert_eq!(user_status(&a, &b).await, StatusCode::OK);
    }
    assert_eq!(a.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        b.get_json_with_cookie(&cookie, "/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}
