//! Gatehouse server entry: configuration → state → router → serve.

use std::process::ExitCode;

use gatehouse::server::{self, config::Config, telemetry};
use leptos::config::get_configuration;

/// glibc's malloc made the runtime's worker threads queue on its arena locks
/// (perf under `make bench`: a tenth of the CPU in futex waits, another
/// fifth in malloc/free); mimalloc's per-thread heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // `.env` first (as `Config::from_env` does), so the log and trace
    // settings can come from it too.
    let _ = dotenvy::dotenv();
    // Held to the end: dropped after `serve` has shut down gracefully, it
    // exports the last spans, then writes the last log lines.
    let _log = match telemetry::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut leptos_options = match get_configuration(None) {
        Ok(c) => c.leptos_options,
        Err(e) => {
            eprintln!("configuration error: Leptos options: {e}");
            return ExitCode::from(2);
        }
    };
    leptos_options.site_addr = config.site_addr;
    // cargo-leptos bakes the bundle name in at build time; a binary built by
    // plain `cargo build` would otherwise link to `/pkg/.js` and never hydrate.
    if leptos_options.output_name.is_empty() {
        leptos_options.output_name = env!("CARGO_PKG_NAME").into();
    }
    let addr = config.site_addr;
    let public = config.base_url.origin().to_string();
    // The recorder first, so that start-up is counted too.
    let metrics = match config.metrics_addr {
        Some(metrics_addr) => match server::scrape::install() {
            Ok(handle) => Some((metrics_addr, handle)),
            Err(e) => {
                eprintln!("configuration error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let built = match server::build(config, leptos_options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr} (LEPTOS_SITE_ADDR): {e}");
            return ExitCode::from(2);
        }
    };
    if let Some((metrics_addr, handle)) = metrics {
        match server::scrape::bind(metrics_addr).await {
            Ok(listener) => {
                tracing::info!(%metrics_addr, "Prometheus metrics at /metrics");
                tokio::spawn(server::scrape::serve(listener, handle, built.auth.clone()));
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    tracing::info!(%addr, "Gatehouse listening; open {public}");
    // On stderr, with the other words for a person: stdout holds log lines
    // only, so that with `LOG_FORMAT=json` every line of it is JSON.
    eprintln!("Gatehouse is running: {public}");
    match server::serve(listener, built).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}
