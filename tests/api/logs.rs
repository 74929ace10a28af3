//! The log lines of the real binary (README "Configuration", `RUST_LOG` /
//! `LOG_FORMAT`): one line per request, and every line a request's handler
//! logs names the request by its `X-Request-Id` (the caller's, or a fresh
//! one the response carries) — in text and in JSON, with traces off (the
//! line written without a span) and on (a span per request). Never the
//! query string: it carries authorization codes.

use std::{process::Stdio, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// What a run of the binary logged about two requests.
struct Logged {
    /// The lines of the request sent with `X-Request-Id: t-1`.
    named: Vec<String>,
    /// The lines of the request sent without one.
    fresh: Vec<String>,
    all: String,
}

/// A file for the binary's stdout.
fn stdout_file() -> (std::path::PathBuf, Stdio) {
    let path = std::env::temp_dir().join(format!(
        "gatehouse-logs-{}-{}",
        std::process::id(),
        free_port()
    ));
    let file = std::fs::File::create(&path).unwrap();
    (path, Stdio::from(file))
}

/// `GET /auth/user?code=…` with a malformed session cookie (the session
/// layer warns) and `X-Request-Id: t-1`: a 401 carrying that id back.
async fn named_request(app: &TestApp) {
    let named = app
        .http
        .get(app.url("/auth/user?code=the-authorization-code&state=s"))
        .header("X-Request-Id", "t-1")
        .header("X-CSRF", "1")
        .header("Cookie", "gatehouse_session=not!an!id")
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(named.headers()["x-request-id"], "t-1");
}

/// Starts the binary with `settings`, sends [`named_request`], then
/// `GET /healthz` without an id, and waits for their lines.
async fn two_requests(idp: &Idp, settings: &[(&str, &str)], id_of: fn(&str) -> String) -> Logged {
    let (dir, stdout) = stdout_file();
    let mut env = vec![("RUST_LOG", "info")];
    env.extend_from_slice(settings);
    let (_process, app, _) = start_gatehouse_to(idp, &env, stdout).await;
    named_request(&app).await;
    let fresh = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    let fresh_id = fresh.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(fresh_id.len(), 36, "a fresh UUID: {fresh_id}");
    // Lines reach stdout within 50 ms of being logged.
    for _ in 0..100 {
        let all = std::fs::read_to_string(&dir).unwrap();
        let of = |id: &str| -> Vec<String> {
            all.lines()
                .filter(|l| id_of(l) == id)
                .map(str::to_string)
                .collect()
        };
        let (named, fresh) = (of("t-1"), of(&fresh_id));
        let answered = |lines: &[String]| lines.iter().any(|l| l.contains("status"));
        if answered(&named) && answered(&fresh) {
            let _ = std::fs::remove_file(&dir);
            return Logged { named, fresh, all };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the request lines did not come:\n{}",
        std::fs::read_to_string(&dir).unwrap()
    );
}

/// The id a text line names: `… request{id=<id>}: …`.
fn text_id(line: &str) -> String {
    line.split_once(" request{id=")
        .and_then(|(_, rest)| rest.split_once("}: "))
        .map(|(id, _)| id.to_string())
        .unwrap_or_default()
}

/// The id a JSON line names: its outermost span's.
fn json_id(line: &str) -> String {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    value["spans"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn check_text(logged: &Logged) {
    let Logged { named, fresh, all } = logged;
    assert!(!all.contains("the-authorization-code"), "{all}");
    assert_eq!(named.len(), 2, "{all}");
    assert!(
        named[0].contains("  WARN request{id=t-1}: gatehouse::")
            && named[0].ends_with("malformed session id"),
        "{all}"
    );
    assert!(
        named[1].contains(
            "  INFO request{id=t-1}: gatehouse::server::telemetry: request method=GET \
             path=/auth/user status=401 ms="
        ),
        "{all}"
    );
    assert_eq!(fresh.len(), 1, "{all}");
    assert!(fresh[0].contains(" path=/healthz status=200 ms="), "{all}");
    // Lines outside any request name none.
    assert!(all.lines().any(|l| text_id(l).is_empty()), "{all}");
}

#[tokio::test]
async fn every_line_of_a_request_names_it_and_none_has_its_query() {
    let idp = Idp::start().await;

    let text = two_requests(&idp, &[], text_id).await;
    check_text(&text);

    let json = two_requests(&idp, &[("LOG_FORMAT", "json")], json_id).await;
    assert!(!json.all.contains("the-authorization-code"), "{}", json.all);
    for line in json.all.lines() {
        let _: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let lines = |lines: &[String]| -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let named = lines(&json.named);
    assert_eq!(named.len(), 2, "{}", json.all);
    assert_eq!(named[0]["level"], "WARN");
    assert_eq!(
        named[0]["span"],
        serde_json::json!({"id": "t-1", "name": "request"})
    );
    let request = &named[1];
    assert_eq!(request["message"], "request");
    assert_eq!(request["method"], "GET");
    assert_eq!(request["path"], "/auth/user");
    assert_eq!(request["status"], 401);
    assert!(request["ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_eq!(request["target"], "gatehouse::server::telemetry");
    let fresh = lines(&json.fresh);
    assert_eq!(fresh.len(), 1, "{}", json.all);
    assert_eq!(fresh[0]["path"], "/healthz");

    // Traces on: the request's span says the id, the line reads the same.
    // (Nothing listens at the collector's address; exporting fails quietly.)
    let collector = format!("http://127.0.0.1:{}", free_port());
    let traced = two_requests(
        &idp,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("RUST_LOG", "info,opentelemetry=off,opentelemetry_sdk=off"),
        ],
        text_id,
    )
    .await;
    check_text(&traced);
}

/// `RUST_LOG=warn` leaves the request line out, not the request's id on
/// the warnings its handler logs.
#[tokio::test]
async fn at_warn_only_the_warnings_are_logged_and_they_name_their_request() {
    let idp = Idp::start().await;
    let (path, stdout) = stdout_file();
    let (_process, app, _) = start_gatehouse_to(&idp, &[("RUST_LOG", "warn")], stdout).await;
    named_request(&app).await;
    let mut all = String::new();
    for _ in 0..100 {
        all = std::fs::read_to_string(&path).unwrap();
        if all.contains("malformed session id") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The request line, had it been written, was appended before the
    // response was sent; lines reach stdout within 50 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = std::fs::read_to_string(&path).unwrap_or(all);
    let _ = std::fs::remove_file(&path);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 1, "{all}");
    assert!(
        lines[0].contains("  WARN request{id=t-1}: gatehouse::"),
        "{all}"
    );
}
