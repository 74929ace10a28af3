//! Authorization: every 401/403 path of pages, server functions and the notes
//! API (session and bearer), and `/admin` ending a user's sessions.
//! Users are real (alice: admin, user; bob: user) at the real dev IdP; bearer
//! tokens are the dev IdP's machine-client tokens, or hostile ones signed by a
//! fake OP for the cases a real IdP would never issue.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use gatehouse::pages::admin::{AdminEndUserSessions, AdminOverview};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use leptos::server_fn::ServerFn;
use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::*,
    hostile_idp::{start_op, Defect, ATTACKER_KEY, OP_KEY},
};

/// The audience the dev IdP puts in its API tokens (`IDP_API_AUDIENCE`).
const DEV_API_AUDIENCE: &str = "http://localhost:3000/api";

async fn signed_in(app: &TestApp, user: &str) -> TestApp {
    let browser = app.second_browser();
    assert_eq!(
        browser.login(user, user).await.status(),
        StatusCode::SEE_OTHER
    );
    browser
}

async fn sub_of(browser: &TestApp) -> String {
    let user: Value = browser.get_json("/auth/user").await.json().await.unwrap();
    user["sub"].as_str().unwrap().to_string()
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn admin_page_is_for_admins_403_for_users_and_login_for_anonymous() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;

    let anonymous = app.get_page("/admin").await;
    assert_eq!(anonymous.status(), StatusCode::FOUND);
    assert_eq!(location(&anonymous), "/auth/login?return_to=/admin");

    let bob = signed_in(&app, "bob").await;
    let page = bob.get_page("/admin").await;
    assert_eq!(
        page.status(),
        StatusCode::FORBIDDEN,
        "no redirect loop: a 403 page"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Not allowed") && html.contains("admin"),
        "{html}"
    );

    let alice = signed_in(&app, "alice").await;
    let page = alice.get_page("/admin").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-testid="admin""#), "{html}");
    assert!(
        html.contains("Bob") && html.contains("Alice"),
        "users seen are listed"
    );
}

#[tokio::test]
async fn admin_server_functions_answer_401_and_403_json() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let path = <AdminOverview as ServerFn>::PATH;

    let (status, body) = json_of(app.server_fn(path, &[]).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"error": "unauthenticated"}));

    let bob = signed_in(&app, "bob").await;
    let (status, body) = json_of(bob.server_fn(path, &[]).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": "forbidden", "needed": "admin"}));
    let end = <AdminEndUserSessions as ServerFn>::PATH;
    let (status, _) = json_of(bob.server_fn(end, &[("sub", "anyone")]).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The same list as JSON for admin tooling, behind the RequireRole<Admin> extractor.
    let (status, body) = json_of(app.get_json("/api/admin/users").await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthenticated"))
    );
    let (status, body) = json_of(bob.get_json("/api/admin/users").await).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );

    let alice = signed_in(&app, "alice").await;
    let (status, tooling) = json_of(alice.get_json("/api/admin/users").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tooling.as_array().unwrap().len(), 2);
    let (status, body) = json_of(alice.server_fn(path, &[]).await).await;
    assert_eq!(status, StatusCode::OK);
    let users = body.as_array().unwrap();
    let bob_row = users
        .iter()
        .find(|u| u["name"] == "Bob Builder")
        .expect("bob is listed");
    assert_eq!(bob_row["roles"], json!(["user"]));
    assert_eq!(bob_row["sessions"].as_array().unwrap().len(), 1);
    let alice_row = users.iter().find(|u| u["name"] != "Bob Builder").unwrap();
    assert_eq!(alice_row["roles"], json!(["admin", "user"]));
    assert_eq!(alice_row["sessions"][0]["current"], true);
}

#[tokio::test]
async fn an_admin_ends_every_session_of_a_user() {
    let idp = Idp::start_with(&[("IDP_EXPOSE_TOKENS_FOR_TESTS", "1")]).await;
    let app = spawn_app(&idp.issuer).await;
    let bob_laptop = signed_in(&app, "bob").await;
    let bob_phone = signed_in(&app, "bob").await;
    let alice = signed_in(&app, "alice").await;
    let bob_sub = sub_of(&bob_laptop).await;
    // Oldest first: bob's two, then alice's.
    let tokens = idp.issued_refresh_tokens().await;
    assert_eq!(tokens.len(), 3);

    let end = <AdminEndUserSessions as ServerFn>::PATH;
    let (status, body) = json_of(alice.server_fn(end, &[("sub", &bob_sub)]).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!(2));
    for bob in [&bob_laptop, &bob_phone] {
        assert_eq!(
            bob.get_json("/auth/user").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(alice.get_json("/auth/user").await.status(), StatusCode::OK);
    // RFC 7009: their refresh tokens are revoked at the IdP, not alice's.
    assert!(idp.revoked_soon(&tokens[0]).await && idp.revoked_soon(&tokens[1]).await);
    assert!(idp.token_active(&tokens[2]).await);
}

async fn post_note(browser: &TestApp, text: &str) -> reqwest::Response {
    browser
        .http
        .post(browser.url("/api/notes"))
        .header("X-CSRF", "1")
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn notes_through_the_session_by_owner_and_role() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;

    let anonymous = app.get_json("/api/notes").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="gatehouse""#
    );

    let bob = signed_in(&app, "bob").await;
    let alice = signed_in(&app, "alice").await;
    let (status, bobs) = json_of(post_note(&bob, "bob's note").await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(bobs["owner_name"], "Bob Builder");
    let (_, alices) = json_of(post_note(&alice, "alice's note").await).await;

    // Without the anti-forgery header a cookie-borne write is refused.
    let forged = bob
        .http
        .post(bob.url("/api/notes"))
        .json(&json!({"text": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let (status, list) = json_of(bob.get_json("/api/notes").await).await;
    assert_eq!(status, StatusCode::OK);
    let texts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["bob's note"], "only your own notes");

    let (status, body) = json_of(bob.get_json("/api/notes?all=true").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");
    let (status, all) = json_of(alice.get_json("/api/notes?all=true").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 2, "admins see everyone's");

    let delete = |browser: &TestApp, id: &Value| {
        browser
            .http
            .delete(browser.url(&format!("/api/notes/{id}")))
            .header("X-CSRF", "1")
            .send()
    };
    assert_eq!(
        delete(&bob, &alices["id"]).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&alice, &bobs["id"]).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (_, list) = json_of(bob.get_json("/api/notes").await).await;
    assert_eq!(list, json!([]));

    let (status, _) = json_of(post_note(&bob, "  ").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A client-credentials token from the dev IdP's machine client.
async fn m2m_token(idp: &Idp, scope: &str) -> String {
    let response = idp
        .post_form(
            "/protocol/openid-connect/token",
            ("gatehouse-m2m", "gatehouse-m2m-secret"),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
    response["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

async fn call_bearer(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    // A non-browser client: no cookie jar, no anti-forgery header.
    reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(token)
        .json(&json!({"text": "from a service"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn machine_clients_use_the_api_with_scoped_bearer_tokens() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("API_AUDIENCE", DEV_API_AUDIENCE)]).await;
    let read_only = m2m_token(&idp, "notes:read").await;
    let read_write = m2m_token(&idp, "notes:read notes:write").await;
    use reqwest::Method;

    let (status, list) =
        json_of(call_bearer(&app, Method::GET, "/api/notes", &read_only).await).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));

    let refused = call_bearer(&app, Method::POST, "/api/notes", &read_only).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let challenge = refused.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#) && challenge.contains("notes:write"),
        "{challenge}"
    );

    let (status, note) =
        json_of(call_bearer(&app, Method::POST, "/api/notes", &read_write).await).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(note["owner"], "gatehouse-m2m");

    // A valid token, but no admin role: everyone's notes stay closed.
    let all = call_bearer(&app, Method::GET, "/api/notes?all=true", &read_write).await;
    assert_eq!(all.status(), StatusCode::FORBIDDEN);

    // Naming an organization the token is not for.
    let other_org = reqwest::Client::new()
        .get(app.url("/api/notes"))
        .bearer_auth(&read_only)
        .header("X-Organization", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(other_org.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_of(other_org).await.1["error"], "organization_mismatch");
}

#[tokio::test]
async fn the_readme_curl_example_works() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("API_AUDIENCE", DEV_API_AUDIENCE)]).await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```sh m2m-example\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a ```sh m2m-example block");
    let script = block
        .replace(
            "http://localhost:8080",
            &format!("http://localhost:{}", idp.port),
        )
        .replace("http://localhost:3000", &app.base);
    let output = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .expect("bash and curl are installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let notes: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("the last line is the notes JSON: {stdout}"));
    assert!(notes.is_array(), "{stdout}");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &Value, pem: &str, kid: &str, typ: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    header.typ = Some(typ.into());
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn hostile_bearer_tokens_get_401_and_insufficient_ones_403() {
    let op = start_op(Defect::None).await;
    let app = spawn_app(&op.issuer).await;
    let audience = app.url("/api");
    let claims = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = json!({
            "iss": op.issuer, "aud": audience, "sub": "svc-1", "client_id": "svc",
            "iat": now(), "exp": now() + 300, "scope": "notes:read notes:write",
            "organization_id": "org-1",
        });
        edit(c.as_object_mut().unwrap());
        c
    };
    let good = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        sign(&claims(edit), OP_KEY, "op-key", "at+jwt")
    };
    let get = |token: String, org: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .get(app.url("/api/notes"))
            .bearer_auth(token);
        if let Some(org) = org {
            request = request.header("X-Organization", org);
        }
        request.send()
    };

    // The baseline: a well-formed token is accepted, for its own organization too.
    assert_eq!(
        get(good(&|_| {}), None).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get(good(&|_| {}), Some("org-1")).await.unwrap().status(),
        StatusCode::OK
    );

    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        URL_SAFE_NO_PAD.encode(claims(&|_| {}).to_string())
    );
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &claims(&|_| {}),
        &EncodingKey::from_secret(b"gatehouse-dev-secret"),
    )
    .unwrap();
    let invalid: Vec<(&str, String)> = vec![
        ("malformed", "not-a-jwt".into()),
        (
            "bad signature",
            sign(&claims(&|_| {}), ATTACKER_KEY, "op-key", "at+jwt"),
        ),
        (
            "unknown kid",
            sign(&claims(&|_| {}), OP_KEY, "no-such-key", "at+jwt"),
        ),
        ("alg none", alg_none),
        ("HS256 with the client secret", hs256),
        (
            "wrong aud",
            good(&|c| {
                c.insert("aud".into(), json!("https://other.example/api"));
            }),
        ),
        (
            "ID-token aud (the client id)",
            good(&|c| {
                c.insert("aud".into(), json!("gatehouse"));
            }),
        ),
        (
            "no aud",
            good(&|c| {
                c.remove("aud");
            }),
        ),
        (
            "wrong iss",
            good(&|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
        ),
        (
            "expired",
            good(&|c| {
                c.insert("exp".into(), json!(now() - 600));
            }),
        ),
        (
            "no exp",
            good(&|c| {
                c.remove("exp");
            }),
        ),
        (
            "not yet valid",
            good(&|c| {
                c.insert("nbf".into(), json!(now() + 600));
            }),
        ),
        (
            "issued in the future",
            good(&|c| {
                c.insert("iat".into(), json!(now() + 600));
            }),
        ),
        (
            "a logout token",
            sign(&claims(&|_| {}), OP_KEY, "op-key", "logout+jwt"),
        ),
        (
            "no subject",
            good(&|c| {
                c.remove("sub");
                c.remove("client_id");
            }),
        ),
        (
            "a Keycloak ID token (payload typ ID) with the API audience",
            good(&|c| {
                c.insert("typ".into(), json!("ID"));
            }),
        ),
    ];
    for (case, token) in invalid {
        let response = get(token, None).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
            "{case}: {challenge}"
        );
    }

    let not_bearer = reqwest::Client::new()
        .get(app.url("/api/notes"))
        .header(header::AUTHORIZATION, "Basic Z2F0ZWhvdXNlOng=")
        // Not a bearer request, so the anti-forgery rule applies; pass it to
        // reach the authentication check.
        .header("X-CSRF", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        not_bearer.status(),
        StatusCode::UNAUTHORIZED,
        "another scheme"
    );

    let no_scope = get(
        good(&|c| {
            c.insert("scope".into(), json!("profile"));
        }),
        None,
    )
    .await
    .unwrap();
    assert_eq!(no_scope.status(), StatusCode::FORBIDDEN);
    assert!(no_scope.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    let wrong_org = get(good(&|_| {}), Some("org-2")).await.unwrap();
    assert_eq!(wrong_org.status(), StatusCode::FORBIDDEN);
    let no_org = get(
        good(&|c| {
            c.remove("organization_id");
        }),
        Some("org-1"),
    )
    .await
    .unwrap();
    assert_eq!(no_org.status(), StatusCode::FORBIDDEN);

    // Roles come from the access token at OIDC_ROLES_CLAIM: an admin token may list everyone's.
    let admin = good(&|c| {
        c.insert("realm_access".into(), json!({"roles": ["admin"]}));
    });
    let all = reqwest::Client::new()
        .get(app.url("/api/notes?all=true"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::OK);
    let user = good(&|_| {});
    let all = reqwest::Client::new()
        .get(app.url("/api/notes?all=true"))
        .bearer_auth(user)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::FORBIDDEN);
}
