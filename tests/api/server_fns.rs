//! The server functions' route (`src/server/server_fns.rs`): `current_user`
//! answered directly is the answer leptos' server-function path gives.

use gatehouse::{components::current_user::CurrentUser, types::SignedInUser};
use leptos::server_fn::{codec::JsonEncoding, Decodes, ServerFn};
use reqwest::{header, Response, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// `current_user` as its client asks it (an empty form body, `X-CSRF`) is
/// answered without leptos' server-function machinery; with anything in
/// the body it takes leptos' path. Both answers carry the same status,
/// headers and JSON, signed in and anonymous, and server_fn's own codec
/// decodes them as the function's output. A streamed body of unknown size
/// is read (and limited) by leptos' path, and a form posted without
/// JavaScript is sent back to its page, as for any server function.
#[tokio::test]
async fn current_user_answers_as_the_server_function_would() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let nobody = TestApp::at(&app.base);
    app.login("alice", "alice").await;
    let path = <CurrentUser as ServerFn>::PATH;
    let ask = |browser: &TestApp, body: &'static str| {
        browser
            .http
            .post(browser.url(path))
            .header("X-CSRF", "1")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    for (who, browser) in [("alice", &app), ("nobody", &nobody)] {
        let direct = Answer::of(ask(browser, "").await.unwrap()).await;
        let leptos = Answer::of(ask(browser, "unused=1").await.unwrap()).await;
        assert_eq!(direct.status, StatusCode::OK, "{who}");
        assert_eq!(direct.head, leptos.head, "{who}: headers");
        assert_eq!(
            without_idle_deadline(direct.json()),
            without_idle_deadline(leptos.json()),
            "{who}: body"
        );
        let decoded: Option<SignedInUser> =
            <JsonEncoding as Decodes<Option<SignedInUser>>>::decode(direct.body.clone().into())
                .unwrap_or_else(|e| panic!("{who}: server_fn cannot decode it: {e}"));
        match who {
            "alice" => {
                let user = decoded.expect("alice is signed in");
                assert_eq!(user.name, "Alice Liddell");
                let at_auth_user: Value = app.get_json("/auth/user").await.json().await.unwrap();
                assert_eq!(
                    without_idle_deadline(direct.json()),
                    without_idle_deadline(at_auth_user)
                );
            }
            _ => assert!(
                decoded.is_none(),
                "nobody is signed in: {:?}",
                direct.json()
            ),
        }
    }

    // A body whose size is not declared: read, and refused over the limit.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..100).map(|_| Ok("y".repeat(1024))).collect();
    let streamed = app
        .http
        .post(app.url(path))
        .header("X-CSRF", "1")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = streamed.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");

    // A form posted without JavaScript goes back to its page.
    let page = app.url("/profile");
    let form = app
        .http
        .post(app.url(path))
        .header(header::ORIGIN, app.url(""))
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::REFERER, &page)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::FOUND);
    assert_eq!(location(&form).trim_end_matches('?'), page);
}

/// A response's status, headers (but those that differ per request) and body.
struct Answer {
    status: StatusCode,
    head: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    async fn of(response: Response) -> Self {
        let status = response.status();
        let mut head: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| !["date", "x-request-id"].contains(&name.as_str()))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect();
        head.sort();
        let body = response.bytes().await.unwrap().to_vec();
        Self { status, head, body }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The user's JSON without its idle deadline, which moves with each read.
fn without_idle_deadline(mut user: Value) -> Value {
    if let Some(session) = user.get_mut("session").and_then(Value::as_object_mut) {
        session.remove("idle_expires_at");
    }
    user
}
