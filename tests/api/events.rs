//! `GET /auth/events` tells an open tab within 2 s that its session ended.

use std::time::{Duration, Instant};

use reqwest::{header, StatusCode};

use crate::{helpers::*, on_every_store};

/// Reads the event stream until an `ended` event, or gives up after `limit`.
async fn wait_for_ended(mut response: reqwest::Response, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut seen = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(limit.saturating_sub(start.elapsed()), response.chunk()).await
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("event: ended") {
            return Some(start.elapsed());
        }
    }
    None
}

/// Opens `/auth/events` for `client`'s session on `app`.
pub async fn open_stream(client: &TestApp, app: &TestApp) -> reqwest::Response {
    let stream = client
        .http
        .get(app.url("/auth/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");
    stream
}

/// Starts reading `stream` in the background: the time to its `ended` event.
pub fn watch(stream: reqwest::Response) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(wait_for_ended(stream, Duration::from_secs(10)))
}

async fn an_open_stream_hears_the_session_end_within_two_seconds(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    app.login("alice", "alice").await;
    let watcher = watch(open_stream(&app, &app).await);

    // Nothing while the session lives...
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !watcher.is_finished(),
        "{kind:?}: no event while the session is alive"
    );
    // ...and `ended` within 2 s once another tab signs out.
    let signed_out = Instant::now();
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert!(watcher.await.unwrap().is_some(), "{kind:?}: an ended event");
    assert!(
        signed_out.elapsed() < Duration::from_secs(2),
        "{kind:?}: {:?}",
        signed_out.elapsed()
    );
}

on_every_store!(an_open_stream_hears_the_session_end_within_two_seconds);

/// The session's own deadline ends the stream too: no one deletes an idle
/// session, it just expires. Activity in another tab pushes the deadline
/// back, and the stream follows it.
#[tokio::test]
async fn a_stream_ends_when_its_session_times_out() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_IDLE_TIMEOUT", "2s")]).await;
    app.login("alice", "alice").await;
    let opened = Instant::now();
    let watcher = watch(open_stream(&app, &app).await);
    // Activity after a second: the idle deadline moves to ~3 s.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
    let after = watcher.await.unwrap().expect("an ended event");
    assert!(
        opened.elapsed() >= Duration::from_millis(2500),
        "the activity kept it alive past the first deadline ({after:?})"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(5),
        "{:?}",
        opened.elapsed()
    );
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_anonymous_stream_ends_at_once() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let stream = app.http.get(app.url("/auth/events")).send().await.unwrap();
    assert!(wait_for_ended(stream, Duration::from_secs(2))
        .await
        .is_some());
}

/// Open streams are capped per session and per instance: beyond, 429 with
/// `Retry-After`; a closed stream gives its place back.
#[tokio::test]
async fn open_streams_are_capped_per_session_and_per_instance() {
    let idp = Idp::start().await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("EVENT_STREAMS_PER_SESSION", "2"),
            ("EVENT_STREAMS_MAX", "3"),
        ],
    )
    .await;
    app.login("alice", "alice").await;
    let open = |browser: &TestApp| {
        let request = browser.http.get(browser.url("/auth/events"));
        async move { request.send().await.unwrap() }
    };
    let first = open(&app).await;
    let second = open(&app).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open(&app).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key(header::RETRY_AFTER));

    // Another session has its own share, up to the instance's cap.
    let bob = app.second_browser();
    bob.login("bob", "bob").await;
    let bobs = open(&bob).await;
    assert_eq!(bobs.status(), StatusCode::OK);
    assert_eq!(
        open(&bob).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "instance cap"
    );

    // A tab that goes away gives its place back.
    drop(first);
    let mut again = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..50 {
        again = open(&app).await.status();
        if again == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(again, StatusCode::OK);
    drop((second, bobs));
}
