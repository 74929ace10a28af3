//! How the process ends, and what a page that never gets its data does.
//!
//! - SIGTERM (`SHUTDOWN_GRACE`): the real binary stops accepting
//!   connections, ends every `/auth/events` stream with a `restart` event
//!   (and a `retry` delay, so the tab's EventSource reconnects elsewhere),
//!   lets the requests in flight finish, and exits 0 — at the end of the
//!   grace at the latest, cutting what is still open.
//! - `PAGE_DEADLINE`: a server-rendered page whose store never answers is a
//!   503 page by the deadline, not a connection held forever.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use axum::{routing::get, Router};
use reqwest::StatusCode;

use crate::helpers::*;

/// An API that answers `finished` after `delay`.
async fn slow_api(delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(get(move || async move {
        tokio::time::sleep(delay).await;
        "finished"
    }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("slow=http://{addr}/ GET")
}

/// A relayed call to the slow API, sent and left in flight.
async fn call_slow_api(
    app: &TestApp,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = app
        .http
        .get(app.url("/api/remote/slow/report"))
        .header("X-CSRF", "1")
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(300)).await;
    in_flight
}

#[tokio::test]
async fn sigterm_lets_requests_finish_ends_the_event_streams_and_exits_0() {
    let idp = Idp::start().await;
    let remotes = slow_api(Duration::from_secs(2)).await;
    let (mut process, app, port) = start_gatehouse(
        &idp,
        &[("API_REMOTES", &remotes), ("SHUTDOWN_GRACE", "15s")],
    )
    .await;
    app.login("alice", "alice").await;
    let mut stream = crate::events::open_stream(&app, &app).await;
    let in_flight = call_slow_api(&app).await;

    let signalled = Instant::now();
    process.terminate();

    // The tab hears `restart`, with a reconnection delay, and the stream ends.
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream stayed open: {seen:?}");
    assert!(
        seen.contains("event: restart") && seen.contains("retry: 1000"),
        "{seen:?}"
    );
    assert!(!seen.contains("event: ended"), "the session did not end");
    // No new connection is accepted meanwhile (the listener closes as the
    // server loop sees the signal, which may come just after the streams
    // were told: well within the tabs' 1 s before they reconnect).
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "new connections are still accepted 1 s after SIGTERM"
    );
    // The request in flight finishes, whole.
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "finished");
    // Then the process exits 0, without waiting for the whole grace.
    let status = process.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn a_request_longer_than_the_grace_is_cut_and_the_process_exits_0() {
    let idp = Idp::start().await;
    let remotes = slow_api(Duration::from_secs(120)).await;
    let (mut process, app, _) =
        start_gatehouse(&idp, &[("API_REMOTES", &remotes), ("SHUTDOWN_GRACE", "1s")]).await;
    app.login("alice", "alice").await;
    let in_flight = call_slow_api(&app).await;

    let signalled = Instant::now();
    process.terminate();
    let status = process.exit_within(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{status:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM with a 1 s grace"
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the request past the grace was cut"
    );
}

/// A page whose data never comes — here the Redis store stopped (SIGSTOP:
/// it keeps its connections and answers nothing) — is a 503 page that says
/// so by `PAGE_DEADLINE`, and the next page after the store is back renders.
#[tokio::test]
async fn a_page_whose_store_never_answers_is_a_503_by_the_deadline() {
    let idp = Idp::start().await;
    let redis = Redis::start().await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("SESSION_STORE", redis.url.as_str()),
            ("PAGE_DEADLINE", "1s"),
        ],
    )
    .await;
    app.login("alice", "alice").await;
    assert_eq!(app.get_page("/sessions").await.status(), StatusCode::OK);

    let signal = |name: &str| {
        let sent = Command::new("kill")
            .args([name, &redis.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal("-STOP");
    let asked = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(5), app.get_page("/sessions")).await;
    let took = asked.elapsed();
    signal("-CONT");
    let response = response.expect("the page hung past its deadline");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"data-reason="page_timeout""#) && html.contains("took too long"),
        "{html}"
    );

    assert_eq!(app.get_page("/sessions").await.status(), StatusCode::OK);
}
