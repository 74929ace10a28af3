//! The request line, written straight to the log writer, and the request's
//! id for the lines its handler logs, without a `tracing` span.
//!
//! Through `tracing`, each request cost a span (a slot in the registry, its
//! fields formatted into a string, entered and left at every poll, closed)
//! and an event (its fields visited one by one through `dyn` calls): 8.3k of
//! the 39.9k instructions of a signed-in `GET /auth/user` (callgrind,
//! `BENCH_ONLY=instructions make bench`), and at 64 connections on 2 cores
//! 15% of its throughput. When Gatehouse's own subscriber logs (`init`) and
//! traces are off, the line is written here in one go, formatted as
//! `line.rs` and `json.rs` format any event, so it reads exactly as it did;
//! and while a request is answered its id is the thread's current request
//! (`request.rs`), which both formats write where the span was. With
//! traces on (OpenTelemetry needs the span), or under another subscriber
//! (an app that mounts the router and logs its own way), the span and the
//! event are made as before (`LoggedRequests`).

use std::sync::OnceLock;

use super::{
    batched::Lines,
    json, line,
    request::{Answered, TARGET},
    traces,
};

/// Where and how the request line is written, set once by `init`.
pub(super) struct AccessLog {
    lines: Lines,
    json: bool,
    /// `RUST_LOG` lets the line through (`info` for [`TARGET`]).
    enabled: bool,
}

static OURS: OnceLock<AccessLog> = OnceLock::new();

/// Called by `init` once its subscriber is the process' own, with the
/// writer and the format of its lines.
pub(super) fn install(lines: Lines, json: bool) {
    let enabled = tracing::enabled!(target: TARGET, tracing::Level::INFO);
    let _ = OURS.set(AccessLog {
        lines,
        json,
        enabled,
    });
}

/// The request line's way when it is ours to write: `init`'s subscriber
/// logs, and traces are off. `None`: through `tracing`, as any event.
pub(super) fn ours() -> Option<&'static AccessLog> {
    if traces::on() {
        return None;
    }
    OURS.get()
}

impl AccessLog {
    /// Writes `request`'s line (unless `RUST_LOG` leaves it out).
    pub(super) fn write(&self, request: &Answered<'_>) {
        if !self.enabled {
            return;
        }
        let mut text = String::with_capacity(256);
        let written = if self.json {
            json::request_line(&mut text, request)
        } else {
            line::request_line(&mut text, request)
        };
        // Writing to a `String` fails only if a `Display` does; none here.
        if written.is_ok() {
            self.lines.append(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::server::telemetry::captured::{json_without_time, logged};

    fn answered(id: &str) -> Answered<'_> {
        Answered {
            at: OffsetDateTime::now_utc(),
            id,
            method: "GET",
            path: "/a=b",
            status: 200,
            ms: 0.416,
        }
    }

    /// The line as `tracing` wrote it: the event in the request's span.
    fn through_tracing(json: bool, id: &str) -> String {
        logged(json, || {
            let span = tracing::info_span!("request", id);
            let _in = span.enter();
            tracing::info!(
                target: "gatehouse::server::telemetry",
                method = "GET",
                path = "/a=b",
                status = 200u16,
                ms = 0.416,
                "request"
            );
        })
    }

    #[test]
    fn the_request_line_reads_as_the_event_in_its_span_did() {
        // An id a proxy may send: spaces and quotes are header-legal.
        for id in ["4b1c-9e", "a \"b\" =c"] {
            let mut direct = String::new();
            line::request_line(&mut direct, &answered(id)).unwrap();
            let traced = through_tracing(false, id);
            let after_time = |l: &str| l.split_once(' ').unwrap().1.to_string();
            assert_eq!(after_time(&direct), after_time(&traced));
            assert!(
                direct.contains("path=\"/a=b\" status=200 ms=0.42\n"),
                "{direct}"
            );

            let mut direct = String::new();
            json::request_line(&mut direct, &answered(id)).unwrap();
            let traced = through_tracing(true, id);
            assert_eq!(json_without_time(&direct), json_without_time(&traced));
            assert_eq!(json_without_time(&direct)["span"]["id"], id);
        }
    }
}
