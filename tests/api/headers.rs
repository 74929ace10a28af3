//! Security headers on every kind of response: pages, JSON, errors, static
//! files; `no-referrer` where URLs carry codes; HSTS only on https.

use reqwest::StatusCode;

use crate::helpers::*;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let responses = [
        ("/", app.get_page("/").await),
        ("/no-such-page", app.get_page("/no-such-page").await),
        ("/auth/user", app.get_json("/auth/user").await),
        ("/auth/login", app.get("/auth/login").await),
        ("/api/notes", app.get_json("/api/notes").await),
        ("/favicon.svg", app.get("/favicon.svg").await),
        ("/healthz", app.get("/healthz").await),
    ];
    for (path, response) in &responses {
        assert_eq!(
            header(response, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(header(response, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            header(response, "content-security-policy"),
            Some("frame-ancestors 'none'"),
            "{path}"
        );
        let referrer = if path.starts_with("/auth/") {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        };
        assert_eq!(
            header(response, "referrer-policy"),
            Some(referrer),
            "{path}"
        );
        assert_eq!(
            header(response, "strict-transport-security"),
            None,
            "{path}: http"
        );
    }
    assert_eq!(responses[2].1.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(responses[3].1.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn https_deployments_get_hsts() {
    let idp = Idp::start().await;
    // Served over plain HTTP here, as behind a TLS-terminating proxy.
    // (A non-loopback origin needs a real client secret: the start-up check.)
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("APP_BASE_URL", "https://app.example.com"),
            ("OIDC_CLIENT_SECRET", "not-the-development-secret"),
        ],
    )
    .await;
    let response = app.get("/healthz").await;
    assert_eq!(
        header(&response, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}
