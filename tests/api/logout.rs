//! RP-initiated logout's round trip (RP-Initiated Logout 1.0 §2–3): the
//! end-session request carries a `state`, the IdP sends the browser back to
//! `/auth/logged-out` with it, and only that browser's own, unused `state`
//! leads on to the sign-out's `return_to`.

use reqwest::{header, Response, StatusCode};

use crate::helpers::*;

async fn logout_to(app: &TestApp, return_to: &str) -> Response {
    app.http
        .post(app.url("/auth/logout"))
        .query(&[("return_to", return_to)])
        .header(header::ORIGIN, &app.base)
        .send()
        .await
        .unwrap()
}

fn set_cookie_named<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

#[tokio::test]
async fn the_idp_returns_the_browser_to_its_return_to_once_with_its_state() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;

    let response = logout_to(&app, "/profile?tab=sessions").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let end_session = location(&response);
    assert_eq!(
        query_param(&end_session, "post_logout_redirect_uri"),
        Some(app.url("/auth/logged-out"))
    );
    let state = query_param(&end_session, "state").expect("a state on the end-session request");
    assert!(state.len() >= 43, "256 bits: {state}");
    let pending = set_cookie_named(&response, "gatehouse_logout").expect("the pending sign-out");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(pending.contains(attribute), "{pending}");
    }

    // The IdP ends its session and sends the browser back with the state.
    let back = walk_idp_logout(&app.http, &end_session).await;
    assert_eq!(query_param(&back, "state").as_deref(), Some(state.as_str()));
    assert!(back.starts_with(&app.url("/auth/logged-out?")), "{back}");

    let landed = app.http.get(&back).send().await.unwrap();
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&landed), "/profile?tab=sessions");
    let cleared =
        set_cookie_named(&landed, "gatehouse_logout").expect("the pending cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The same return again (a reload, a replay) goes home.
    let again = app.http.get(&back).send().await.unwrap();
    assert_eq!(location(&again), "/");
}

/// A return that is not this browser's own sign-out: a forged `state`, no
/// `state`, or the right `state` in another browser. None leads anywhere but
/// `/`, and a wrong `state` spends the pending sign-out.
#[tokio::test]
async fn a_return_without_the_browsers_own_state_goes_home() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    let end_session = location(&logout_to(&app, "/profile").await);
    let state = query_param(&end_session, "state").unwrap();

    // The right state in another browser (which holds no pending sign-out).
    let (other, _) = browser();
    let elsewhere = other
        .get(app.url(&format!("/auth/logged-out?state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&elsewhere), "/");

    let without = app
        .http
        .get(app.url("/auth/logged-out"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&without), "/");
    let forged = app
        .http
        .get(app.url("/auth/logged-out?state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&forged), "/");
    let late = app
        .http
        .get(app.url(&format!("/auth/logged-out?state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        location(&late),
        "/",
        "the wrong state spent the pending sign-out"
    );
}

/// Without an IdP session to end (signed out already), the sign-out goes
/// straight to its `return_to`, which must be a path of this app.
#[tokio::test]
async fn a_sign_out_without_a_session_goes_straight_to_a_same_origin_return_to() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let local = logout_to(&app, "/profile").await;
    assert_eq!(local.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&local), "/profile");
    assert!(set_cookie_named(&local, "gatehouse_logout").is_none());
    for outside in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        assert_eq!(location(&logout_to(&app, outside).await), "/", "{outside}");
    }

    // A malformed query loses only the return_to, never the sign-out.
    app.login("bob", "bob").await;
    let odd = app
        .http
        .post(app.url("/auth/logout?return_to=/a&return_to=/b"))
        .header(header::ORIGIN, &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A session cookie that names no live session is removed, with the
/// attributes it was set with: after a sign-out, and when it is unknown or
/// malformed (a stale tab, a forged value). On https the removal carries
/// `Secure`, without which a browser refuses to let it remove a `__Host-`
/// cookie.
#[tokio::test]
async fn a_cookie_naming_no_live_session_is_removed() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    let ended = app.session_cookie().unwrap();
    let out = app.logout().await;
    assert!(
        set_cookie_named(&out, "gatehouse_session").is_some_and(|c| c.contains("Max-Age=0")),
        "the sign-out removes the session cookie: {:?}",
        out.headers()
    );
    let https = spawn_app_with(
        &idp.issuer,
        &[
            ("APP_BASE_URL", "https://app.example.com"),
            ("OIDC_CLIENT_SECRET", "not-the-development-secret"),
        ],
    )
    .await;
    for (app, name, secure) in [
        (&app, "gatehouse_session", false),
        (&https, "__Host-gatehouse_session", true),
    ] {
        for value in [ended.as_str(), "AAAAAAAAAAAAAAAAAAAAAA", "not-an-id"] {
            let response = reqwest::Client::new()
                .get(app.url("/auth/user"))
                .header(header::COOKIE, format!("other=1; {name}={value}"))
                .header("X-CSRF", "1")
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{name}={value}"
            );
            let removal = set_cookie_named(&response, name)
                .unwrap_or_else(|| panic!("{name}={value} is not removed"));
            assert!(removal.starts_with(&format!("{name}=;")), "{removal}");
            for attribute in ["Max-Age=0", "Path=/", "HttpOnly", "SameSite=Lax"] {
                assert!(removal.contains(attribute), "{removal} lacks {attribute}");
            }
            assert_eq!(removal.contains("Secure"), secure, "{removal}");
            assert_eq!(
                response
                    .headers()
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .count(),
                1,
                "nothing else is set, and no session is made"
            );
        }
    }
}
