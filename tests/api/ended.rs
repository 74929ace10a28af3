//! Sessions end when they are ended, on every store, even while a request of
//! that session is in flight; no write puts older tokens back; and a session
//! idle for a while is renewed by one request, not by each. Each test drives
//! the real race: an upstream held open by the test (no sleeps), the other
//! action (sign-out, "end all others", an admin's end, another refresh, the
//! session's other requests) taken while the relayed call waits there, then
//! the call released. Twenty rounds each, on memory, SQLite, Redis and
//! Postgres.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{http::StatusCode as AxumStatus, response::IntoResponse, routing::any, Router};
use gatehouse::pages::{admin::AdminEndUserSessions, sessions::EndOtherSessions};
use leptos::server_fn::ServerFn;
use reqwest::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::{helpers::*, on_every_store};

const ROUNDS: usize = 20;

/// An API upstream that answers 401 once when asked to (so the relay
/// refreshes the token and retries), and otherwise holds every request until
/// the test releases it with the status to answer.
struct HeldUpstream {
    base: String,
    reject_next: Arc<AtomicBool>,
    /// One release handle per request now waiting at the upstream.
    arrivals: mpsc::UnboundedReceiver<Release>,
}

/// Lets a held upstream request go, answering with this status.
type Release = oneshot::Sender<AxumStatus>;

/// A relayed call of the test's, running.
type Call = tokio::task::JoinHandle<StatusCode>;

impl HeldUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let reject_next = Arc::new(AtomicBool::new(false));
        let (tx, arrivals) = mpsc::unbounded_channel();
        let router = Router::new().route(
            "/{*path}",
            any({
                let reject_next = reject_next.clone();
                move || {
                    let (reject_next, tx) = (reject_next.clone(), tx.clone());
                    async move {
                        if reject_next.swap(false, Ordering::SeqCst) {
                            return AxumStatus::UNAUTHORIZED.into_response();
                        }
                        let (release, released) = oneshot::channel();
                        tx.send(release).unwrap();
                        let status = released.await.unwrap_or(AxumStatus::OK);
                        (status, "{\"ok\":true}").into_response()
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            base,
            reject_next,
            arrivals,
        }
    }

    /// A relayed call through `browser` that first gets a 401 (so the relay
    /// refreshes the session's tokens) and whose retry is then held here.
    /// `Err(status)` when the call ended without reaching the upstream again
    /// (the refresh was refused and the session ended).
    async fn refreshing_call(&mut self, browser: &TestApp) -> Result<(Call, Release), StatusCode> {
        self.reject_next.store(true, Ordering::SeqCst);
        self.call(browser).await
    }

    /// A relayed call through `browser` held here (no refresh on the way).
    async fn held_call(&mut self, browser: &TestApp) -> (Call, Release) {
        self.call(browser)
            .await
            .expect("the relayed call reaches the upstream")
    }

    async fn call(&mut self, browser: &TestApp) -> Result<(Call, Release), StatusCode> {
        let client = browser.same_browser();
        let mut call =
            tokio::spawn(async move { client.get_json("/api/remote/held/x").await.status() });
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::select! {
                release = self.arrivals.recv() => Ok(release.unwrap()),
                status = &mut call => Err(status.unwrap()),
            }
        })
        .await
        .expect("the relayed call neither reached the upstream nor ended");
        waited.map(|release| (call, release))
    }
}

async fn setup(kind: StoreKind) -> (TestStore, Idp, HeldUpstream, TestApp) {
    let store = TestStore::start(kind).await;
    let idp = Idp::start().await;
    let upstream = HeldUpstream::start().await;
    let remotes = format!("held={}/held/", upstream.base);
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("API_REMOTES", remotes.as_str()),
            ("SESSION_STORE", store.url.as_str()),
            // Forty sign-ins a minute from one address is this test, not an attack.
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    )
    .await;
    (store, idp, upstream, app)
}

/// Ended by its own sign-out, by the user's other session ("end all
/// others") or by an admin ending every session of the user, while a relayed
/// call of it, which refreshed the tokens, waits at the upstream: once that
/// call completes, the old cookie still gets 401.
async fn an_ended_session_never_comes_back(kind: StoreKind) {
    let (_store, _idp, mut upstream, app) = setup(kind).await;
    for round in 0..ROUNDS {
        let by_admin = round % 3 == 2;
        let browser = app.second_browser();
        // alice is an admin of the dev IdP; bob is not.
        let other = app.second_browser();
        let user = if by_admin { "bob" } else { "alice" };
        browser.login(user, user).await;
        other.login("alice", "alice").await;
        let cookie = browser.session_cookie().unwrap();
        let sub: serde_json::Value = browser.get_json("/auth/user").await.json().await.unwrap();
        let sub = sub["sub"].as_str().unwrap().to_string();

        let (call, release) = upstream
            .refreshing_call(&browser)
            .await
            .expect("the relayed call refreshes and is held");
        match round % 3 {
            0 => assert_eq!(browser.logout().await.status(), StatusCode::SEE_OTHER),
            1 => {
                let ended = other
                    .server_fn(<EndOtherSessions as ServerFn>::PATH, &[])
                    .await;
                assert_eq!(ended.status(), StatusCode::OK);
            }
            _ => {
                let ended = other
                    .server_fn(<AdminEndUserSessions as ServerFn>::PATH, &[("sub", &sub)])
                    .await;
                assert_eq!(ended.status(), StatusCode::OK, "{kind:?} round {round}");
                assert_eq!(ended.text().await.unwrap(), "1", "{kind:?} round {round}");
            }
        }
        assert_eq!(
            app.get_json_with_cookie(&cookie, "/auth/user")
                .await
                .status(),
            StatusCode::UNAUTHORIZED,
            "{kind:?} round {round}: ended"
        );
        release.send(AxumStatus::OK).unwrap();
        call.await.unwrap();
        assert_eq!(
            app.get_json_with_cookie(&cookie, "/auth/user")
                .await
                .status(),
            StatusCode::UNAUTHORIZED,
            "{kind:?} round {round}: the ended session came back when the in-flight call completed"
        );
        assert_eq!(
            other.get_json("/auth/user").await.status(),
            StatusCode::OK,
            "{kind:?} round {round}: the other session is untouched"
        );
    }
}

/// A request that read the session before a refresh (and refreshed itself,
/// earlier) completes after a newer refresh: the tokens it holds are older
/// and must not replace the stored ones. With refresh-token rotation, the
/// next refresh would present a rotated-out token, the IdP would refuse it
/// and the user would be signed out.
async fn no_write_puts_older_tokens_back(kind: StoreKind) {
    let (_store, idp, mut upstream, app) = setup(kind).await;
    for round in 0..ROUNDS {
        let browser = app.second_browser();
        browser.login("bob", "bob").await;
        let before = refreshes(&idp.stats().await);

        // A refreshes (tokens 2) and waits at the upstream.
        let (a, release_a) = upstream.refreshing_call(&browser).await.expect("A");
        // B refreshes again (tokens 3: refresh token 2 is now spent) and completes.
        let (b, release_b) = upstream.refreshing_call(&browser).await.expect("B");
        release_b.send(AxumStatus::OK).unwrap();
        assert_eq!(
            b.await.unwrap(),
            StatusCode::OK,
            "{kind:?} round {round}: B"
        );
        // A completes with its older copy of the session.
        release_a.send(AxumStatus::OK).unwrap();
        assert_eq!(
            a.await.unwrap(),
            StatusCode::OK,
            "{kind:?} round {round}: A"
        );
        // C refreshes once more: with refresh token 3, not the spent 2.
        match upstream.refreshing_call(&browser).await {
            Ok((c, release_c)) => {
                release_c.send(AxumStatus::OK).unwrap();
                assert_eq!(
                    c.await.unwrap(),
                    StatusCode::OK,
                    "{kind:?} round {round}: C"
                );
            }
            Err(status) => panic!(
                "{kind:?} round {round}: the third refresh was refused ({status}): \
                 an older refresh token had been written back"
            ),
        }
        assert_eq!(
            browser.get_json("/auth/user").await.status(),
            StatusCode::OK,
            "{kind:?} round {round}: still signed in"
        );
        assert_eq!(refreshes(&idp.stats().await) - before, 3);
    }
}

fn refreshes(stats: &serde_json::Value) -> i64 {
    stats["token_requests"]["refresh_token"].as_i64().unwrap()
}

/// The login `state` is spent when the callback takes it, even if the
/// callback then fails with a 5xx (whose session changes the session layer
/// never saves): replaying the same callback URL must not sign in.
async fn a_state_is_spent_even_when_the_callback_fails(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let port = free_port();
    let idp = Idp::start_on(port, &[]).await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    let callback = app.callback_url_for("alice", "alice", None).await;
    drop(idp); // the token endpoint is now unreachable
    let failed = app.http.get(&callback).send().await.unwrap();
    assert!(
        failed.status().is_server_error(),
        "{kind:?}: {}",
        failed.status()
    );
    let _idp = Idp::start_on(port, &[]).await;
    let replayed = app.http.get(&callback).send().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST, "{kind:?}");
    let page = replayed.text().await.unwrap();
    assert!(
        page.contains("unknown_state"),
        "{kind:?}: the replayed callback found its state still pending: {page}"
    );
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Long enough without activity that the session's next request renews its
/// idle deadline (once a minute, `auth/session/signed_in.rs`), and short of
/// the access token's expiry (the dev IdP's 300 s): no refresh on the way.
const DUE: Duration = Duration::from_secs(90);

/// One request renews a session that has been idle; the session's other
/// requests meanwhile neither renew nor report a deadline that is not
/// stored (`auth/session/renewals.rs`). Held: a relayed call that has
/// renewed its copy of the session and waits at the upstream before its
/// response saves it. Released, its renewal is the one stored; if its
/// response is a 5xx (never saved), the session's next request after the
/// claim's second renews instead.
async fn one_request_renews_while_the_others_keep_the_stored_deadline(kind: StoreKind) {
    let (_store, _idp, mut upstream, app) = setup(kind).await;
    for round in 0..ROUNDS {
        let fails = round % 2 == 1;
        let browser = app.second_browser();
        browser.login("alice", "alice").await;
        let stored = idle_deadline(&browser, &app).await;
        app.wait(DUE);

        let (call, release) = upstream.held_call(&browser).await;
        for other in 0..3 {
            assert_eq!(
                idle_deadline(&browser, &app).await,
                stored,
                "{kind:?} round {round}: request {other} renewed while another held the renewal"
            );
        }
        release
            .send(match fails {
                true => AxumStatus::BAD_GATEWAY,
                false => AxumStatus::OK,
            })
            .unwrap();
        let status = call.await.unwrap();
        let renewed = idle_deadline(&browser, &app).await;
        let due = DUE.as_secs() as i64;
        if fails {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{kind:?} round {round}");
            assert_eq!(
                renewed, stored,
                "{kind:?} round {round}: a 5xx's renewal was stored, or another request renewed within the claim's second"
            );
            app.wait(Duration::from_secs(1));
            let renewed = idle_deadline(&browser, &app).await;
            assert!(
                (stored + due..=stored + due + 3).contains(&renewed),
                "{kind:?} round {round}: after the failed renewal's claim lapsed, {renewed} (stored {stored})"
            );
            assert_eq!(
                idle_deadline(&browser, &app).await,
                renewed,
                "{kind:?} round {round}: that renewal was stored"
            );
        } else {
            assert_eq!(status, StatusCode::OK, "{kind:?} round {round}");
            assert!(
                (stored + due..=stored + due + 2).contains(&renewed),
                "{kind:?} round {round}: the held request's renewal, {renewed} (stored {stored})"
            );
        }
    }
}

/// A renewal in flight (a relayed call that renewed its copy of the session
/// and waits at the upstream) when the session is signed out: its save never
/// brings the session back. On SQLite this write is the renewal-only kind,
/// written in a batch by the renewer (`server/store/renewer.rs`).
async fn a_renewal_in_flight_never_brings_an_ended_session_back(kind: StoreKind) {
    let (_store, _idp, mut upstream, app) = setup(kind).await;
    for round in 0..ROUNDS {
        let browser = app.second_browser();
        browser.login("alice", "alice").await;
        let cookie = browser.session_cookie().unwrap();
        app.wait(DUE);
        let (call, release) = upstream.held_call(&browser).await;
        assert_eq!(browser.logout().await.status(), StatusCode::SEE_OTHER);
        release.send(AxumStatus::OK).unwrap();
        call.await.unwrap();
        assert_eq!(
            app.get_json_with_cookie(&cookie, "/auth/user")
                .await
                .status(),
            StatusCode::UNAUTHORIZED,
            "{kind:?} round {round}: the renewal in flight brought the ended session back"
        );
    }
}

/// A signed-in read that changes nothing is answered from the store's copy,
/// shared, without loading the request's own (`signed_in_unchanged` in
/// `auth/session/signed_in.rs`); every read whose answer changes the
/// session still takes the full path. Here, on each store: reads that
/// change nothing send no cookie (nothing saved) and report the stored
/// deadline; the first read after the renewal falls due renews it; the
/// next read finds that renewal; and past the absolute lifetime (the idle
/// deadline still ahead, no renewal due) the session ends, cookie removed,
/// and stays ended.
async fn reads_that_change_nothing_save_nothing_and_the_others_still_do(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    // Tokens outliving the test's clock: no refresh on the way.
    let idp = Idp::start_with(&[("IDP_ACCESS_TOKEN_TTL", "3600")]).await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("SESSION_STORE", store.url.as_str()),
            ("SESSION_IDLE_TIMEOUT", "5m"),
            ("SESSION_ABSOLUTE_TIMEOUT", "10m"),
        ],
    )
    .await;
    app.login("alice", "alice").await;
    // (whether the read sent a cookie, the idle deadline it reported, the
    // absolute one: the idle deadline never passes it)
    let read = || async {
        let response = app.get_json("/auth/user").await;
        assert_eq!(response.status(), StatusCode::OK, "{kind:?}");
        let sent_cookie = response.headers().get("set-cookie").is_some();
        let user: serde_json::Value = response.json().await.unwrap();
        let at = |deadline: &str| user["session"][deadline].as_i64().unwrap();
        (
            sent_cookie,
            at("idle_expires_at"),
            at("absolute_expires_at"),
        )
    };
    let (sent_cookie, first, absolute) = read().await;
    assert!(!sent_cookie, "{kind:?}: a read that changes nothing saved");
    for _ in 0..3 {
        assert_eq!(read().await, (false, first, absolute), "{kind:?}");
    }
    // Renewed 4 minutes after sign-in (to 9), then 8 (to 13, shown as 10).
    for _ in 0..2 {
        let (_, before, _) = read().await;
        app.wait(Duration::from_secs(4 * 60));
        let (sent_cookie, renewed, _) = read().await;
        assert!(sent_cookie, "{kind:?}: the renewal due was not saved");
        let expected = (before + 240).min(absolute);
        assert!(
            (expected..=expected + 2).contains(&renewed),
            "{kind:?}: renewed to {renewed} from {before} (expected {expected})"
        );
        assert_eq!(
            read().await,
            (false, renewed, absolute),
            "{kind:?}: the next read did not find the renewal"
        );
    }
    // Renewed again 20 s before the absolute lifetime ends, then read 20 s
    // after it: the idle stamp is fresh (no renewal due), the session
    // still in the store (its idle deadline ahead), yet it has ended.
    app.wait(Duration::from_secs(110));
    assert_eq!(read().await, (true, absolute, absolute), "{kind:?}");
    app.wait(Duration::from_secs(20));
    for _ in 0..2 {
        let response = app.get_json("/auth/user").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{kind:?}: served past its absolute lifetime"
        );
    }
    assert_eq!(app.session_cookie(), None, "{kind:?}: cookie not removed");
}

on_every_store!(
    reads_that_change_nothing_save_nothing_and_the_others_still_do,
    one_request_renews_while_the_others_keep_the_stored_deadline,
    a_renewal_in_flight_never_brings_an_ended_session_back,
    an_ended_session_never_comes_back,
    no_write_puts_older_tokens_back,
    a_state_is_spent_even_when_the_callback_fails,
);
