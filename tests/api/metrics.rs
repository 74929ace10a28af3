//! `METRICS_ADDR`: the real binary serves Prometheus text on its own
//! listener (never the public one), and the counters move by exactly what
//! happened — a sign-in, a refresh, a sign-out — with no label carrying a
//! user, a session or a token.

use std::{collections::HashMap, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Every series of a scrape: `name{labels}` → value.
async fn scrape(url: &str) -> (String, HashMap<String, f64>) {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let series = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    (text, series)
}

/// How much `series` moved from `before` to `after` (absent counts as 0).
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn a_login_a_refresh_and_a_logout_move_the_counters_by_exactly_that() {
    // Access tokens of 2 s: stale after 1 s (the leeway is capped at half).
    let idp = Idp::start_with(&[("IDP_ACCESS_TOKEN_TTL", "2")]).await;
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let (_process, app, _) = start_gatehouse(&idp, &[("METRICS_ADDR", &metrics_addr)]).await;
    let url = format!("http://{metrics_addr}/metrics");
    assert_eq!(
        app.get("/metrics").await.status(),
        StatusCode::NOT_FOUND,
        "the public listener does not serve the metrics"
    );

    let (_, start) = scrape(&url).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, signed_in) = scrape(&url).await;
    for (series, by) in [
        (r#"gatehouse_logins_started_total{provider="default"}"#, 1.0),
        (
            r#"gatehouse_logins_completed_total{provider="default"}"#,
            1.0,
        ),
        (
            r#"gatehouse_http_requests_total{group="auth",status="303"}"#,
            2.0,
        ),
    ] {
        assert_eq!(moved(&start, &signed_in, series), by, "{series}");
    }
    assert_eq!(signed_in["gatehouse_active_sessions"], 1.0);
    assert!(
        moved(
            &start,
            &signed_in,
            r#"gatehouse_idp_request_duration_seconds_count{provider="default",endpoint="token"}"#
        ) == 1.0,
        "the code exchange is one token-endpoint call"
    );
    assert!(
        signed_in
            .keys()
            .any(|k| k
                .starts_with("gatehouse_store_operation_duration_seconds_count{store=\"memory\"")),
        "store operations are timed"
    );

    let user: Value = app.get_json("/auth/user").await.json().await.unwrap();
    let sub = user["sub"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK
    );
    let (_, refreshed) = scrape(&url).await;
    assert_eq!(
        moved(
            &signed_in,
            &refreshed,
            r#"gatehouse_refreshes_total{outcome="success"}"#
        ),
        1.0
    );
    assert_eq!(
        moved(
            &signed_in,
            &refreshed,
            r#"gatehouse_idp_request_duration_seconds_count{provider="default",endpoint="token"}"#
        ),
        1.0
    );

    let cookie = app.session_cookie().unwrap();
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    let (text, out) = scrape(&url).await;
    assert_eq!(
        moved(
            &refreshed,
            &out,
            r#"gatehouse_sessions_ended_total{cause="logout"}"#
        ),
        1.0
    );
    assert_eq!(out["gatehouse_active_sessions"], 0.0);
    assert_eq!(
        moved(
            &start,
            &out,
            r#"gatehouse_logins_failed_total{reason="unknown_state"}"#
        ),
        0.0
    );
    for secret in [sub.as_str(), "alice", "Alice", cookie.as_str(), "eyJ"] {
        assert!(!text.contains(secret), "{secret:?} in the metrics");
    }
}
