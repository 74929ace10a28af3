//! Anti-forgery on the wire: what a cross-site page could send is refused.

use leptos::server_fn::ServerFn;
use reqwest::{header, StatusCode};
use serde_json::Value;

use crate::helpers::*;

fn server_fn_path() -> &'static str {
    <gatehouse::components::current_user::CurrentUser as ServerFn>::PATH
}

#[tokio::test]
async fn server_functions_need_the_header_or_our_origin() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    let url = app.url(server_fn_path());

    // What Leptos' own client sends (form-encoded POST + X-CSRF): accepted.
    let ok = app
        .http
        .post(&url)
        .header("X-CSRF", "1")
        .form(&[("", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let user: Value = ok.json().await.unwrap();
    assert_eq!(user["name"], "Alice Liddell");

    // A cross-site form post rides on the cookie with no preflight: refused.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let mut request = app.http.post(&url).form(&[("", "")]);
        if let Some(o) = origin {
            request = request.header(header::ORIGIN, o);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "origin {origin:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "csrf");
    }
    // The header does not help a foreign origin.
    let response = app
        .http
        .post(&url)
        .header("X-CSRF", "1")
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn logout_and_json_reads_refuse_forgeries() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("bob", "bob").await;

    let forged = app.http.post(app.url("/auth/logout")).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let cross = app
        .http
        .post(app.url("/auth/logout"))
        .header(header::ORIGIN, "https://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // Still signed in after both attempts.
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);

    // A plain GET of the JSON endpoints without the header is refused.
    assert_eq!(app.get("/auth/user").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/auth/userinfo").await.status(),
        StatusCode::FORBIDDEN
    );

    // The same-origin sign-out form works.
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn health_endpoints_answer() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
}
