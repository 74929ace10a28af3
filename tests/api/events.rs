//! `GET /auth/events` tells an open tab within 2 s that its session ended.

use std::time::{Duration, Instant};

use reqwest::{header, StatusCode};

use crate::helpers::*;

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

#[tokio::test]
async fn an_open_stream_hears_the_session_end_within_two_seconds() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    let stream = app.http.get(app.url("/auth/events")).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()[header::CONTENT_TYPE], "text/event-stream");

    // Nothing while the session lives...
    let watcher = tokio::spawn(wait_for_ended(stream, Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !watcher.is_finished(),
        "no event while the session is alive"
    );
    // ...and `ended` within 2 s once another tab signs out.
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    let after = watcher.await.unwrap().expect("an ended event");
    assert!(after < Duration::from_millis(1500 + 2000), "{after:?}");
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
