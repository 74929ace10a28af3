//! Step-up authentication against the real dev IdP: acting as an admin needs
//! a sign-in within `ADMIN_MAX_AUTH_AGE` (10 minutes by default); an older
//! one gets 401 `insufficient_user_authentication` (RFC 9470) on the API and
//! server functions, and a redirect to a `max_age` sign-in on the page. The
//! new sign-in must be the same user; it replaces the session's tokens and
//! rotates its id.

use std::time::Duration;

use gatehouse::pages::admin::AdminOverview;
use leptos::server_fn::ServerFn;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn admin_needs_a_recent_sign_in_and_a_step_up_renews_it() {
    let idp = Idp::start_with(&[("IDP_EXPOSE_TOKENS_FOR_TESTS", "1")]).await;
    let app = spawn_app(&idp.issuer).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    let first_token = idp.issued_refresh_tokens().await.pop().expect("issued");
    assert_eq!(
        app.get_json("/api/admin/users").await.status(),
        StatusCode::OK
    );
    let overview = <AdminOverview as ServerFn>::PATH;
    assert_eq!(app.server_fn(overview, &[]).await.status(), StatusCode::OK);

    // Eleven minutes on: still signed in, no longer recent enough for /admin.
    app.wait(Duration::from_secs(11 * 60));
    let api = app.get_json("/api/admin/users").await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let header = challenge(&api);
    assert!(
        header.contains("error=\"insufficient_user_authentication\"")
            && header.contains("max_age=\"600\""),
        "{header}"
    );
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_user_authentication");
    let call = app.server_fn(overview, &[]).await;
    assert_eq!(call.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&call).contains("max_age=\"600\""));
    let body: Value = call.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_user_authentication");
    assert_eq!(body["max_age"], 600);
    // Everything else is untouched: only the admin's actions ask for more.
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
    assert_eq!(app.get_page("/profile").await.status(), StatusCode::OK);

    // The page sends the admin to the step-up sign-in, which comes back here.
    let page = app.get_page("/admin").await;
    assert_eq!(page.status(), StatusCode::FOUND);
    let step_up = location(&page);
    assert_eq!(step_up, "/auth/login?return_to=/admin&max_age=600");
    // Pushed (the dev IdP offers PAR): the browser carries only the request_uri.
    let authorize = location(&app.get(&step_up).await);
    assert!(
        query_param(&authorize, "request_uri").is_some(),
        "{authorize}"
    );
    assert_eq!(query_param(&authorize, "max_age"), None);
    let before = app.session_cookie().unwrap();
    let callback = app.back_from_idp(&authorize, "alice", "alice").await;
    let back = app.http.get(callback).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/admin");

    // Recent again, under a new session id; the old id is worthless.
    assert_eq!(
        app.get_json("/api/admin/users").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get_page("/admin").await.status(), StatusCode::OK);
    let after = app.session_cookie().unwrap();
    assert_ne!(before, after, "the session id rotates");
    assert_eq!(
        app.get_json_with_cookie(&before, "/auth/user")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The step-up came from the same IdP session (same `sid`): the replaced
    // session's refresh token is not revoked, as revoking it would end the
    // grant the new tokens share at this IdP (RFC 7009 §2.1).
    let new_token = idp.issued_refresh_tokens().await.pop().expect("issued");
    assert_ne!(new_token, first_token);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        idp.token_active(&new_token).await,
        "the new session's token"
    );
}

/// A step-up confirms who is signed in: signing in as someone else is
/// refused with a clear page, and the session stays as it was (same user,
/// same id). `max_age=0` makes the IdP ask for credentials again.
#[tokio::test]
async fn a_step_up_as_another_user_is_refused_and_the_session_stays() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    let before = app.session_cookie().unwrap();

    let authorize = location(&app.get("/auth/login?return_to=/admin&max_age=0").await);
    let callback = app.back_from_idp(&authorize, "bob", "bob").await;
    let refused = app.http.get(callback).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("data-reason=\"step_up_other_user\""),
        "{html}"
    );

    assert_eq!(app.session_cookie().unwrap(), before, "same session id");
    let user: Value = app.get_json("/auth/user").await.json().await.unwrap();
    assert_eq!(user["preferred_username"], "alice", "{user}");
}

/// The same user confirming with fresh credentials (`max_age=0`): accepted.
/// A malformed `max_age` ends the login with a clear page, not a login that
/// silently ignores it.
#[tokio::test]
async fn a_step_up_with_fresh_credentials_is_accepted_and_bad_values_are_refused() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    let authorize = location(&app.get("/auth/login?return_to=/admin&max_age=0").await);
    let callback = app.back_from_idp(&authorize, "alice", "alice").await;
    let back = app.http.get(callback).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get_json("/api/admin/users").await.status(),
        StatusCode::OK
    );

    for bad in [
        "max_age=-1",
        "max_age=soon",
        "max_age=99999999999",
        "acr_values=%22x%22",
    ] {
        let response = app.get(&format!("/auth/login?{bad}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("data-reason=\"invalid_step_up\""),
            "{bad}: {html}"
        );
    }
}
