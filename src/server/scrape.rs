//! `METRICS_ADDR`: Prometheus text at `/metrics`, on a listener of its own
//! (never the public one: it tells who is busy and what fails). What is
//! counted, and under which labels, is `telemetry::metrics`; this installs
//! the process's recorder and answers the scrapes.

use std::net::SocketAddr;

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use super::telemetry::metrics;
use crate::auth::state::AuthState;

/// Histogram buckets for every `…_seconds` metric: from half a millisecond
/// (a cached signed-in request) to 30 s (an IdP that is slow to answer).
const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process's Prometheus recorder; from then on every count in
/// `telemetry::metrics` is kept. Once per process (the recorder is global).
pub fn install() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .and_then(|builder| builder.install_recorder())
        .inspect(|_| metrics::switch_on())
        .map_err(|e| format!("METRICS_ADDR: cannot install the metrics recorder: {e}"))
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    auth: AuthState,
}

/// Binds `addr` for the scrapes (an error names the setting to change).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (METRICS_ADDR): {e}"))
}

/// Answers `GET /metrics` on `listener` for as long as the process runs.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, auth: AuthState) {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(Scrape { handle, auth });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics listener stopped");
    }
}

/// The gauges read at scrape time (the store's count of signed-in sessions,
/// this instance's open event streams), then everything as Prometheus text.
async fn render(State(scrape): State<Scrape>) -> impl IntoResponse {
    let active = match scrape.auth.store.signed_in().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the store did not count its sessions");
            None
        }
    };
    metrics::gauges(active, scrape.auth.event_streams.open());
    scrape.handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scrape.handle.render(),
    )
}
