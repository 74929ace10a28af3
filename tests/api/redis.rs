//! What only Redis does among the shared stores (what every shared store
//! does is in `instances.rs`): a password kept out of every message, one
//! error code for a store that refuses commands, and a sign-out that waits
//! out an instance that stopped hearing (Redis instances serve kept copies
//! under a lease), and a read that straddles a sign-out, never kept.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::Notify;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn user_status(client: &TestApp, app: &TestApp) -> StatusCode {
    client.get_json_at(app, "/auth/user").await.status()
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

/// A TCP relay to Redis that can hold back Redis' answers on subscription
/// connections (those that sent SUBSCRIBE) while every other connection
/// goes on: a network that silently stops delivering to one connection,
/// which stays open. It can also hold back the answers on the one
/// connection that next sends a given command ([`Self::hold_next`]).
struct StallingRelay {
    url: String,
    stalled: Arc<AtomicBool>,
    held: Arc<Held>,
}

/// [`StallingRelay::hold_next`]'s state.
#[derive(Default)]
struct Held {
    /// The command to catch, until a connection sends it.
    command: Mutex<Option<&'static str>>,
    /// Told when a connection sent it (its answers are held from then on).
    caught: Notify,
    /// While true, the connection that sent it gets nothing back.
    holding: AtomicBool,
}

impl StallingRelay {
    async fn start(redis_url: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = redis_url.trim_start_matches("redis://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let stalled = Arc::new(AtomicBool::new(false));
        let stall = stalled.clone();
        let held = Arc::new(Held::default());
        let hold = held.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let subscriber = Arc::new(AtomicBool::new(false));
                let marks = subscriber.clone();
                // This connection sent the command caught: its answers wait
                // (marked before the command goes on, so its answer cannot
                // slip through first).
                let caught_here = Arc::new(AtomicBool::new(false));
                let catches = caught_here.clone();
                let hold_in = hold.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                        let sent = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                        if sent.contains("SUBSCRIBE") {
                            marks.store(true, Ordering::SeqCst);
                        }
                        let caught = {
                            let mut command = hold_in.command.lock().unwrap();
                            command
                                .is_some_and(|c| sent.contains(c))
                                .then(|| command.take())
                                .is_some()
                        };
                        if caught {
                            catches.store(true, Ordering::SeqCst);
                            hold_in.caught.notify_one();
                        }
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let stall = stall.clone();
                let hold_out = hold.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        while (subscriber.load(Ordering::SeqCst) && stall.load(Ordering::SeqCst))
                            || (caught_here.load(Ordering::SeqCst)
                                && hold_out.holding.load(Ordering::SeqCst))
                        {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { url, stalled, held }
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }

    /// The next connection to send `command` (`"MGET"`: a session read
    /// that missed the instance's cache) gets no answer until [`Self::release`].
    fn hold_next(&self, command: &'static str) {
        self.held.holding.store(true, Ordering::SeqCst);
        *self.held.command.lock().unwrap() = Some(command);
    }

    /// Waits until the command [`Self::hold_next`] named has been sent.
    async fn caught(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.held.caught.notified())
            .await
            .expect("the command to hold was never sent");
    }

    fn release(&self) {
        self.held.holding.store(false, Ordering::SeqCst);
    }
}

/// The cache-fill rule on Redis, on the wire: instance `b` reads a session
/// it does not keep, and Redis' answer (the live record) is held on its way
/// back while `a` signs the session out. The held request read the session
/// before the sign-out, so it may still be served; but what it read must
/// not be kept: `b` holds a lease and serves kept sessions without asking
/// Redis, so a copy kept from that read would serve the ended session.
#[tokio::test]
async fn a_read_that_straddles_a_sign_out_is_not_kept() {
    let redis = Redis::start().await;
    let idp = Idp::start().await;
    let relay = StallingRelay::start(&redis.url).await;
    let a = spawn_app_with(&idp.issuer, &[("SESSION_STORE", redis.url.as_str())]).await;
    let b = spawn_app_with(&idp.issuer, &[("SESSION_STORE", relay.url.as_str())]).await;
    // b takes its lease serving another session.
    let other = TestApp::at(&a.base);
    other.login("bob", "bob").await;
    for _ in 0..3 {
        assert_eq!(user_status(&other, &b).await, StatusCode::OK);
    }
    a.login("alice", "alice").await;
    let cookie = a.session_cookie().expect("signed in");

    relay.hold_next("MGET");
    let held = tokio::spawn({
        let (b, cookie) = (TestApp::at(&b.base), cookie.clone());
        async move { b.get_json_with_cookie(&cookie, "/auth/user").await.status() }
    });
    relay.caught().await;
    assert_eq!(a.logout().await.status(), StatusCode::SEE_OTHER);
    relay.release();
    let status = held.await.unwrap();
    assert!(
        status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
        "the straddling read: {status}"
    );
    for _ in 0..3 {
        assert_eq!(
            b.get_json_with_cookie(&cookie, "/auth/user").await.status(),
            StatusCode::UNAUTHORIZED,
            "b kept what it read while the session was signed out"
        );
    }
    assert_eq!(
        user_status(&other, &b).await,
        StatusCode::OK,
        "the other session stays"
    );
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
