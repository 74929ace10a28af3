//! `/sessions`: a user sees their own sessions and ends one or all others —
//! never anyone else's — and the browser never learns a session id.

use gatehouse::pages::sessions::{EndOtherSessions, EndSession, MySessions};
use leptos::server_fn::ServerFn;
use reqwest::StatusCode;
use serde_json::Value;

use crate::{helpers::*, on_every_store};

async fn list(app: &TestApp) -> (String, Vec<Value>) {
    let response = app.server_fn(<MySessions as ServerFn>::PATH, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    (text, value.as_array().cloned().unwrap_or_default())
}

/// On every store: with SQLite and Redis each record is sealed with its own
/// cookie's key (`SESSION_KEY_IN_COOKIE`, the default), so the list is made
/// of what the store keeps beside it, and a session is ended by its store
/// key, never by a cookie id.
async fn users_list_and_end_their_own_sessions_only(kind: StoreKind) {
    let idp = Idp::start().await;
    let store = TestStore::start(kind).await;
    let laptop = spawn_app_with(&idp.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    let phone = laptop.second_browser();
    let bob = laptop.second_browser();
    laptop.login("alice", "alice").await;
    phone.login("alice", "alice").await;
    bob.login("bob", "bob").await;

    let (text, sessions) = list(&laptop).await;
    assert_eq!(sessions.len(), 2, "{text}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    for cookie in [
        laptop.session_cookie().unwrap(),
        phone.session_cookie().unwrap(),
    ] {
        assert!(
            !text.contains(&cookie),
            "a session id must never reach the browser"
        );
    }
    assert!(sessions.iter().all(|s| s["ip"] == "127.0.0.1"
        && s["handle"].as_str().unwrap().len() >= 16
        && s["created_at"].as_i64().unwrap() > 1_700_000_000
        && s["last_active"].as_i64() >= s["created_at"].as_i64()));

    // Bob cannot end Alice's sessions, even knowing a handle.
    let phone_handle = sessions.iter().find(|s| s["current"] == false).unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_string();
    let response = bob
        .server_fn(<EndSession as ServerFn>::PATH, &[("handle", &phone_handle)])
        .await;
    assert_eq!(response.json::<Value>().await.unwrap(), 0);
    assert_eq!(phone.get_json("/auth/user").await.status(), StatusCode::OK);

    // The laptop ends the phone's session.
    let response = laptop
        .server_fn(<EndSession as ServerFn>::PATH, &[("handle", &phone_handle)])
        .await;
    assert_eq!(response.json::<Value>().await.unwrap(), 1);
    assert_eq!(
        phone.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(laptop.get_json("/auth/user").await.status(), StatusCode::OK);

    // The phone signs in again; the laptop ends all others.
    phone.login("alice", "alice").await;
    let response = laptop
        .server_fn(<EndOtherSessions as ServerFn>::PATH, &[])
        .await;
    assert_eq!(response.json::<Value>().await.unwrap(), 1);
    assert_eq!(
        phone.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(laptop.get_json("/auth/user").await.status(), StatusCode::OK);
    assert_eq!(
        bob.get_json("/auth/user").await.status(),
        StatusCode::OK,
        "other users are untouched"
    );
    let (_, sessions) = list(&laptop).await;
    assert_eq!(sessions.len(), 1);

    // Anonymous callers get 401 `unauthenticated`, from every one of them.
    let anonymous = laptop.second_browser();
    for (path, form) in [
        (<MySessions as ServerFn>::PATH, vec![]),
        (
            <EndSession as ServerFn>::PATH,
            vec![("handle", phone_handle.as_str())],
        ),
        (<EndOtherSessions as ServerFn>::PATH, vec![]),
    ] {
        let response = anonymous.server_fn(path, &form).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "unauthenticated"}),
            "{path}"
        );
    }
}

on_every_store!(users_list_and_end_their_own_sessions_only);

#[tokio::test]
async fn the_sessions_page_lists_them_and_redirects_anonymous_visitors() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let response = app.get_page("/sessions").await;
    assert!(response.status().is_redirection());
    assert_eq!(location(&response), "/auth/login?return_to=/sessions");

    app.login("alice", "alice").await;
    let html = app.get_page("/sessions").await.text().await.unwrap();
    assert!(
        html.contains("Your sessions") && html.contains("this browser"),
        "{html}"
    );
    assert!(!html.contains(&app.session_cookie().unwrap()));
}

/// RFC 7009: ending a session revokes its refresh token at the IdP (the
/// dev IdP, asked by introspection), and only its own: the session that
/// ended it keeps a working token. Sign-out does the same for its session.
///
/// Where records are sealed with their own cookie's key (SQLite and Redis
/// by default) the server cannot read a session whose browser is not
/// asking: ending it from another device deletes it with its tokens, which
/// nothing can read any more, but cannot revoke them. Its own sign-out
/// still revokes. With `SESSION_KEY_IN_COOKIE=0` both are revoked.
async fn ending_a_session_revokes_its_refresh_token_at_the_idp(kind: StoreKind) {
    for key_in_cookie in ["1", "0"] {
        let idp = Idp::start_with(&[("IDP_EXPOSE_TOKENS_FOR_TESTS", "1")]).await;
        let store = TestStore::start(kind).await;
        let laptop = spawn_app_with(
            &idp.issuer,
            &[
                ("SESSION_STORE", store.url.as_str()),
                ("SESSION_KEY_IN_COOKIE", key_in_cookie),
            ],
        )
        .await;
        let phone = laptop.second_browser();
        laptop.login("alice", "alice").await;
        let laptop_token = idp.issued_refresh_tokens().await.pop().expect("issued");
        phone.login("alice", "alice").await;
        let phone_token = idp.issued_refresh_tokens().await.pop().expect("issued");
        assert_ne!(laptop_token, phone_token);
        assert!(idp.token_active(&laptop_token).await && idp.token_active(&phone_token).await);

        let response = laptop
            .server_fn(<EndOtherSessions as ServerFn>::PATH, &[])
            .await;
        assert_eq!(response.json::<Value>().await.unwrap(), 1);
        assert_eq!(
            phone.get_json("/auth/user").await.status(),
            StatusCode::UNAUTHORIZED
        );
        let unreadable = key_in_cookie == "1" && !matches!(kind, StoreKind::Memory);
        if unreadable {
            assert!(
                idp.token_active(&phone_token).await,
                "{kind:?}: a record the server cannot read had its token revoked: \
                 is a token kept outside the sealed record?"
            );
        } else {
            assert!(
                idp.revoked_soon(&phone_token).await,
                "{kind:?}: the ended session's refresh token still works at the IdP"
            );
        }
        assert!(
            idp.token_active(&laptop_token).await,
            "the session that stays keeps its token"
        );

        assert_eq!(laptop.logout().await.status(), StatusCode::SEE_OTHER);
        assert!(
            idp.revoked_soon(&laptop_token).await,
            "{kind:?}: sign-out leaves the refresh token working at the IdP"
        );
    }
}

on_every_store!(ending_a_session_revokes_its_refresh_token_at_the_idp);

/// The "sign out my other devices" form works before the page's script has
/// loaded: the browser posts it as a plain form (same-origin, `Accept:
/// text/html`), the sessions end, and the browser is sent back to the page
/// it came from rather than shown the function's JSON.
#[tokio::test]
async fn a_form_posted_without_javascript_ends_the_sessions_and_goes_back() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    let phone = app.second_browser();
    phone.login("alice", "alice").await;
    let page = app.url("/sessions");
    let response = app
        .http
        .post(app.url(<EndOtherSessions as ServerFn>::PATH))
        .header(reqwest::header::ORIGIN, app.url(""))
        .header(reqwest::header::ACCEPT, "text/html,application/xhtml+xml")
        .header(reqwest::header::REFERER, &page)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    // (server_fn clears a former error from the page's query: a bare `?`.)
    assert_eq!(location(&response).trim_end_matches('?'), page);
    assert_eq!(
        phone.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}
