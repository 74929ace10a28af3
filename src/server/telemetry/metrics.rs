//! What Gatehouse counts, through the `metrics` facade: every name and
//! label is here, so a reader sees in one place that no label carries a
//! subject, a session id, an e-mail or a token — labels are route groups,
//! outcomes, causes, provider and remote names from the configuration,
//! endpoint names, store kinds and HTTP statuses.
//!
//! Why the facade (and `metrics-exporter-prometheus` behind it, `scrape.rs`)
//! rather than the `prometheus` crate: the auth core is a library an axum
//! app can mount; emitting through the facade, it reports into whatever
//! recorder that app installs (Prometheus, StatsD, OpenTelemetry). When
//! nothing collects them (`METRICS_ADDR` unset, and no embedding app called
//! [`switch_on`]) every call below is one relaxed atomic load and nothing
//! more: no label is built, nothing allocated.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use metrics::{counter, gauge, histogram};

static ON: AtomicBool = AtomicBool::new(false);

/// From now on, record (call once a recorder is installed).
pub fn switch_on() {
    ON.store(true, Ordering::Relaxed);
}

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Requests by route group and status (`gatehouse_http_requests_total`),
/// and their latency (`gatehouse_http_request_duration_seconds`).
pub fn request(path: &str, status: u16, took: Duration) {
    if !on() {
        return;
    }
    let group = route_group(path);
    counter!("gatehouse_http_requests_total", "group" => group, "status" => status.to_string())
        .increment(1);
    histogram!("gatehouse_http_request_duration_seconds", "group" => group)
        .record(took.as_secs_f64());
}

/// The policy group a path belongs to (as `server::build` routes them).
pub fn route_group(path: &str) -> &'static str {
    match path {
        "/healthz" | "/readyz" => "probes",
        "/auth/events" => "events",
        p if p.starts_with("/auth/") => "auth",
        p if p.starts_with("/api/remote/") => "relay",
        p if p.starts_with("/api/") => "api",
        p if p.starts_with("/pkg/") || p == "/favicon.svg" => "static",
        _ => "pages",
    }
}

/// A sign-in sent to the IdP (`provider`: its configured name).
pub fn login_started(provider: &str) {
    if !on() {
        return;
    }
    counter!("gatehouse_logins_started_total", "provider" => provider.to_string()).increment(1);
}

/// A sign-in that came back and made a session.
pub fn login_completed(provider: &str) {
    if !on() {
        return;
    }
    counter!("gatehouse_logins_completed_total", "provider" => provider.to_string()).increment(1);
}

/// A sign-in that ended on an error page; `reason` is the page's reason code.
pub fn login_failed(reason: &'static str) {
    if !on() {
        return;
    }
    counter!("gatehouse_logins_failed_total", "reason" => reason).increment(1);
}

/// A refresh-token grant and how it ended: `success`, `invalid_grant` (the
/// IdP refused: the session ends), `network` (no usable answer: the session
/// stays), `session_ended` (ended while it was at the IdP).
pub fn refresh(outcome: &'static str) {
    if !on() {
        return;
    }
    counter!("gatehouse_refreshes_total", "outcome" => outcome).increment(1);
}

/// A request that found another one refreshing its session's tokens and
/// waited for that refresh instead of making its own (the single flight).
pub fn refresh_waited() {
    if !on() {
        return;
    }
    counter!("gatehouse_refresh_waits_total").increment(1);
}

/// A back-channel logout token: `accepted`, or refused with `reason`.
pub fn backchannel_logout(outcome: &'static str) {
    if !on() {
        return;
    }
    counter!("gatehouse_backchannel_logouts_total", "outcome" => outcome).increment(1);
}

/// `count` sessions ended, by `cause`: `logout`, `idle`, `absolute`,
/// `backchannel`, `admin`, `user` (from `/sessions`), `refresh_refused`.
pub fn sessions_ended(cause: &'static str, count: usize) {
    if !on() {
        return;
    }
    counter!("gatehouse_sessions_ended_total", "cause" => cause).increment(count as u64);
}

/// Signed-in sessions in the store's index, and open `/auth/events`
/// streams on this instance (set when `/metrics` is scraped).
pub fn gauges(active_sessions: Option<usize>, open_streams: usize) {
    if !on() {
        return;
    }
    if let Some(active) = active_sessions {
        gauge!("gatehouse_active_sessions").set(active as f64);
    }
    gauge!("gatehouse_event_streams_open").set(open_streams as f64);
}

/// One call to an IdP endpoint (`token`, `userinfo`, `par`, `revocation`,
/// `discovery`, `jwks`) and how long it took, answered or not.
pub fn idp_call(provider: &str, endpoint: &'static str, took: Duration) {
    if !on() {
        return;
    }
    histogram!(
        "gatehouse_idp_request_duration_seconds",
        "provider" => provider.to_string(),
        "endpoint" => endpoint
    )
    .record(took.as_secs_f64());
}

/// One session-store operation (`load`, `write`, `create`, `delete`) on
/// `store` (`memory`, `sqlite`, `redis`), and whether it failed.
pub fn store_op(store: &'static str, op: &'static str, took: Duration, failed: bool) {
    if !on() {
        return;
    }
    histogram!("gatehouse_store_operation_duration_seconds", "store" => store, "op" => op)
        .record(took.as_secs_f64());
    if failed {
        counter!("gatehouse_store_errors_total", "store" => store, "op" => op).increment(1);
    }
}

/// A relayed call to `remote` (its `API_REMOTES` name) and the status the
/// browser got.
pub fn relay(remote: &str, status: u16) {
    if !on() {
        return;
    }
    counter!(
        "gatehouse_relay_requests_total",
        "remote" => remote.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::route_group;

    #[test]
    fn paths_fall_in_their_route_groups() {
        for (path, group) in [
            ("/healthz", "probes"),
            ("/auth/events", "events"),
            ("/auth/user", "auth"),
            ("/api/remote/reports/x", "relay"),
            ("/api/notes", "api"),
            ("/pkg/gatehouse.wasm", "static"),
            ("/profile", "pages"),
            ("/no/such/page", "pages"),
        ] {
            assert_eq!(route_group(path), group, "{path}");
        }
    }
}
