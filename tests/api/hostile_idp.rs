//! A hostile OpenID Provider: discovery is honest, but one answer is broken
//! in one specific way — the ID token from the code exchange, the JWKS (key
//! cases), or, after a good login, the refresh answer or userinfo. A broken
//! login must end on an error page with no session; a broken refresh ends the
//! session. Well-formed answers from the same fake OP succeed, which proves
//! the rejections are about the defect.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{extract::State, routing::get, routing::post, Json, Router};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use openidconnect::{
    core::{
        CoreHmacKey, CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
        CoreRsaPrivateSigningKey,
    },
    AccessToken, Audience, EmptyAdditionalClaims, IssuerUrl, JsonWebKeyId, Nonce,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub const OP_KEY: &str = include_str!("../fixtures/hostile-op-key.pem");
pub const ATTACKER_KEY: &str = include_str!("../fixtures/attacker-key.pem");
const ACCESS_TOKEN: &str = "hostile-access-token";

#[derive(Clone, Copy, Debug)]
pub enum Defect {
    None,
    WrongAudience,
    WrongIssuer,
    BadSignature,
    AlgNone,
    WrongNonce,
    Expired,
    HmacWithClientSecret,
    AtHashMismatch,
    NotAJwt,
    // OpenID Foundation RP tests (rp-id_token-*, rp-key-rotation-*).
    /// `rp-id_token-sub`: no `sub`.
    SubMissing,
    /// `rp-id_token-aud`, missing variant: no `aud`.
    AudMissing,
    /// `rp-id_token-iat`: no `iat`.
    IatMissing,
    /// `rp-id_token-kid-absent-single-jwks`: no `kid`, one key — accept.
    KidAbsentSingleKey,
    /// `rp-id_token-kid-absent-multiple-jwks`: no `kid`, two keys — reject.
    KidAbsentMultipleKeys,
    /// A `kid` the OP never published, even after a re-fetch — reject.
    UnknownKid,
    /// `rp-key-rotation-op-sign-key`: the OP rotates its key after the app
    /// fetched the JWKS; the token names the new `kid` — accept after re-fetch.
    RotatedKey,
    /// Login is fine; the refresh answer's ID token is fine too (control).
    RefreshGood,
    /// The refresh answer's ID token names another `sub` (OIDC Core §12.2).
    RefreshOtherSub,
    /// The refresh answer's ID token names another `iss` (OIDC Core §12.2).
    RefreshOtherIss,
    /// The OP rotated its signing key after the login: the refresh answer's
    /// ID token names a `kid` the app's cached JWKS lacks — accept after one
    /// re-fetch, as at login (the session must not end on a key rotation).
    RefreshRotatedKey,
    /// `rp-userinfo-bad-sub-claim`: userinfo names another `sub`.
    UserinfoOtherSub,
    /// The revocation endpoint never answers (a sign-out must not wait for it).
    RevocationHangs,
    /// The token endpoint refuses the code with 403 `invalid_code` (not
    /// RFC 6749's 400 `invalid_grant`), as some providers do.
    TokenForbidden,
    /// The token endpoint fails with a 500 HTML page.
    TokenServerError,
    /// The token endpoint answers 502 with an empty body.
    TokenEmptyError,
    /// Login is fine; the refresh grant gets a 500 HTML page.
    RefreshServerError,
    /// Login is fine; the refresh grant waits until the test releases it
    /// (`Op::release_refresh`), then issues a new refresh token.
    RefreshHeld,
    /// The ID token says the user signed in an hour ago, whatever `max_age`
    /// asked (an IdP that ignores it).
    AuthTimeOld,
    /// The ID token has no `auth_time`, even when `max_age` was sent.
    AuthTimeMissing,
    /// A refresh grant naming a `resource` gets 400 `invalid_target`
    /// (RFC 8707 §2.2); without one it is fine.
    ResourceRefused,
}

impl Defect {
    /// Defects in what comes after a good login: the access token lives 1 s
    /// so the next call refreshes.
    fn after_login(self) -> bool {
        matches!(
            self,
            Self::RefreshGood
                | Self::RefreshServerError
                | Self::RefreshHeld
                | Self::RefreshOtherSub
                | Self::RefreshOtherIss
                | Self::RefreshRotatedKey
                | Self::UserinfoOtherSub
        )
    }
}

/// A revocation request as received: (Authorization header, form).
pub type Revocation = (String, std::collections::HashMap<String, String>);

#[derive(Clone)]
pub struct Op {
    pub issuer: String,
    defect: Defect,
    /// How often the JWKS was fetched (key rotation happens after the first).
    jwks_fetches: Arc<std::sync::atomic::AtomicUsize>,
    /// The nonce of the pending login, learned from the authorization URL.
    pub nonce: Arc<Mutex<String>>,
    /// What reached the revocation endpoint.
    pub revocations: Arc<Mutex<Vec<Revocation>>>,
    /// `RefreshHeld`: a refresh grant has arrived and waits for
    /// `release_refresh`.
    pub refresh_arrived: Arc<tokio::sync::Notify>,
    pub release_refresh: Arc<tokio::sync::Notify>,
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn rsa(pem: &str) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new("op-key".into()))).unwrap()
}

fn claims(
    issuer: &str,
    audience: &str,
    nonce: &str,
    exp: SystemTime,
    iat: SystemTime,
) -> CoreIdTokenClaims {
    CoreIdTokenClaims::new(
        IssuerUrl::new(issuer.to_string()).unwrap(),
        vec![Audience::new(audience.to_string())],
        exp.into(),
        iat.into(),
        StandardClaims::new(SubjectIdentifier::new("mallory".into())),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(nonce.to_string())))
    .set_auth_time(Some(iat.into()))
}

fn id_token(op: &Op) -> String {
    let nonce = op.nonce.lock().unwrap().clone();
    let at = AccessToken::new(ACCESS_TOKEN.into());
    let in_5m = now() + Duration::from_secs(300);
    let good = |c: CoreIdTokenClaims, key: &CoreRsaPrivateSigningKey, at: &AccessToken| {
        CoreIdToken::new(
            c,
            key,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            Some(at),
            None,
        )
        .unwrap()
        .to_string()
    };
    let key = rsa(OP_KEY);
    let c = |iss: &str, aud: &str, nonce: &str, exp, iat| claims(iss, aud, nonce, exp, iat);
    match op.defect {
        Defect::None
        | Defect::RefreshGood
        | Defect::RefreshOtherSub
        | Defect::RefreshOtherIss
        | Defect::RefreshRotatedKey
        | Defect::UserinfoOtherSub
        | Defect::RevocationHangs
        | Defect::TokenForbidden
        | Defect::TokenServerError
        | Defect::TokenEmptyError
        | Defect::RefreshServerError
        | Defect::ResourceRefused => {
            good(c(&op.issuer, "gatehouse", &nonce, in_5m, now()), &key, &at)
        }
        Defect::WrongAudience => good(
            c(&op.issuer, "someone-else", &nonce, in_5m, now()),
            &key,
            &at,
        ),
        Defect::WrongIssuer => good(
            c("https://evil.example", "gatehouse", &nonce, in_5m, now()),
            &key,
            &at,
        ),
        Defect::BadSignature => good(
            c(&op.issuer, "gatehouse", &nonce, in_5m, now()),
            &rsa(ATTACKER_KEY),
            &at,
        ),
        Defect::WrongNonce => good(
            c(&op.issuer, "gatehouse", "not-the-nonce", in_5m, now()),
            &key,
            &at,
        ),
        Defect::Expired => {
            let past = now() - Duration::from_secs(3600);
            good(
                c(
                    &op.issuer,
                    "gatehouse",
                    &nonce,
                    past,
                    past - Duration::from_secs(300),
                ),
                &key,
                &at,
            )
        }
        Defect::AtHashMismatch => good(
            c(&op.issuer, "gatehouse", &nonce, in_5m, now()),
            &key,
            &AccessToken::new("a-different-access-token".into()),
        ),
        Defect::HmacWithClientSecret => CoreIdToken::new(
            c(&op.issuer, "gatehouse", &nonce, in_5m, now()),
            &CoreHmacKey::new("gatehouse-dev-secret".as_bytes()),
            CoreJwsSigningAlgorithm::HmacSha256,
            Some(&at),
            None,
        )
        .unwrap()
        .to_string(),
        Defect::AlgNone => {
            // Hand-made: no library will produce an unsigned token for us.
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let exp = now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 300;
            let payload = json!({
                "iss": op.issuer, "aud": "gatehouse", "sub": "mallory", "nonce": nonce,
                "exp": exp, "iat": exp - 300,
            });
            format!("{header}.{}.", URL_SAFE_NO_PAD.encode(payload.to_string()))
        }
        Defect::NotAJwt => "this.is-not-a.jwt".into(),
        Defect::SubMissing => raw(op, &nonce, Some("op-key"), OP_KEY, |c| {
            c.remove("sub");
        }),
        Defect::AudMissing => raw(op, &nonce, Some("op-key"), OP_KEY, |c| {
            c.remove("aud");
        }),
        Defect::IatMissing => raw(op, &nonce, Some("op-key"), OP_KEY, |c| {
            c.remove("iat");
        }),
        Defect::KidAbsentSingleKey | Defect::KidAbsentMultipleKeys => {
            raw(op, &nonce, None, OP_KEY, |_| {})
        }
        Defect::UnknownKid => raw(op, &nonce, Some("never-published"), OP_KEY, |_| {}),
        Defect::RotatedKey => raw(op, &nonce, Some("op-key-2"), ATTACKER_KEY, |_| {}),
        // One IdP session for every sign-in (as an IdP keeping its SSO).
        Defect::RefreshHeld => raw(op, &nonce, Some("op-key"), OP_KEY, |c| {
            c.insert("sid".into(), json!("op-session-1"));
        }),
        Defect::AuthTimeOld => raw(op, &nonce, Some("op-key"), OP_KEY, |c| {
            let iat = c["iat"].as_u64().unwrap();
            c.insert("auth_time".into(), json!(iat - 3600));
        }),
        Defect::AuthTimeMissing => raw(op, &nonce, Some("op-key"), OP_KEY, |c| {
            c.remove("auth_time");
        }),
    }
}

/// An RS256 ID token built by hand (jsonwebtoken), for shapes the
/// openidconnect types refuse to produce: claims removed, `kid` absent.
fn raw(
    op: &Op,
    nonce: &str,
    kid: Option<&str>,
    pem: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> String {
    let iat = now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut claims = json!({
        "iss": op.issuer, "aud": "gatehouse", "sub": "mallory", "nonce": nonce,
        "exp": iat + 300, "iat": iat, "auth_time": iat,
    });
    edit(claims.as_object_mut().unwrap());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn discovery(State(op): State<Op>) -> Json<Value> {
    Json(json!({
        "issuer": op.issuer,
        "authorization_endpoint": format!("{}/authorize", op.issuer),
        "token_endpoint": format!("{}/token", op.issuer),
        "userinfo_endpoint": format!("{}/userinfo", op.issuer),
        "jwks_uri": format!("{}/jwks", op.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "revocation_endpoint": format!("{}/revoke", op.issuer),
    }))
}

/// RFC 7009: records what was sent, answers 200 (or never, when it hangs).
async fn revoke(
    State(op): State<Op>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> StatusCode {
    if matches!(op.defect, Defect::RevocationHangs) {
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    op.revocations.lock().unwrap().push((auth, form));
    StatusCode::OK
}

async fn jwks(State(op): State<Op>) -> Json<Value> {
    let fetches = op
        .jwks_fetches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let key = |pem: &str, kid: &str| {
        CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.into())))
            .unwrap()
            .as_verification_key()
    };
    let keys = match op.defect {
        Defect::KidAbsentMultipleKeys => json!([key(OP_KEY, "op-key"), key(ATTACKER_KEY, "other")]),
        Defect::RotatedKey if fetches > 0 => json!([key(ATTACKER_KEY, "op-key-2")]),
        Defect::RefreshRotatedKey if fetches > 0 => {
            json!([key(OP_KEY, "op-key"), key(ATTACKER_KEY, "op-key-2")])
        }
        _ => json!([key(OP_KEY, "op-key")]),
    };
    Json(json!({ "keys": keys }))
}

async fn token(
    State(op): State<Op>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match op.defect {
        Defect::TokenForbidden => {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "invalid_code", "error_description": "code not valid"})),
            )
                .into_response()
        }
        Defect::TokenServerError | Defect::RefreshServerError
            if op.defect.after_login()
                == (form.get("grant_type").map(String::as_str) == Some("refresh_token")) =>
        {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(axum::http::header::CONTENT_TYPE, "text/html")],
                "<html><body>Internal Server Error</body></html>",
            )
                .into_response()
        }
        Defect::TokenEmptyError => return StatusCode::BAD_GATEWAY.into_response(),
        Defect::ResourceRefused if form.contains_key("resource") => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid_target"})),
            )
                .into_response()
        }
        _ => {}
    }
    let refresh_grant = form.get("grant_type").map(String::as_str) == Some("refresh_token");
    let refresh_token = if refresh_grant && matches!(op.defect, Defect::RefreshHeld) {
        op.refresh_arrived.notify_one();
        op.release_refresh.notified().await;
        "rotated-refresh-token"
    } else {
        "hostile-refresh-token"
    };
    let id_token = if refresh_grant {
        // A refresh answer carries no nonce (OIDC Core §12.2).
        match op.defect {
            Defect::RefreshOtherSub => raw(&op, "", Some("op-key"), OP_KEY, |c| {
                c.insert("sub".into(), json!("someone-else"));
                c.remove("nonce");
            }),
            Defect::RefreshOtherIss => raw(&op, "", Some("op-key"), OP_KEY, |c| {
                c.insert("iss".into(), json!("https://evil.example"));
                c.remove("nonce");
            }),
            Defect::RefreshRotatedKey => raw(&op, "", Some("op-key-2"), ATTACKER_KEY, |c| {
                c.remove("nonce");
            }),
            _ => raw(&op, "", Some("op-key"), OP_KEY, |c| {
                c.remove("nonce");
            }),
        }
    } else {
        id_token(&op)
    };
    Json(json!({
        "access_token": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": if op.defect.after_login() { 1 } else { 300 },
        "refresh_token": refresh_token,
        "id_token": id_token,
    }))
    .into_response()
}

async fn userinfo(State(op): State<Op>) -> Json<Value> {
    let sub = match op.defect {
        Defect::UserinfoOtherSub => "someone-else",
        _ => "mallory",
    };
    Json(json!({ "sub": sub, "name": "Mallory" }))
}

pub async fn start_op(defect: Defect) -> Op {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let op = Op {
        issuer,
        defect,
        jwks_fetches: Default::default(),
        nonce: Arc::new(Mutex::new(String::new())),
        revocations: Default::default(),
        refresh_arrived: Default::default(),
        release_refresh: Default::default(),
    };
    let router = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .route("/revoke", post(revoke))
        .with_state(op.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    op
}

/// Starts a login against the fake OP and returns the callback's response.
pub async fn login_through(defect: Defect) -> (TestApp, reqwest::Response) {
    let op = start_op(defect).await;
    let app = spawn_app(&op.issuer).await;
    let response = login_at(&op, &app).await;
    (app, response)
}

/// Logs `app` in through the fake OP `op`; returns the callback's response.
pub async fn login_at(op: &Op, app: &TestApp) -> reqwest::Response {
    let authorize = app.start_login(None).await;
    *op.nonce.lock().unwrap() = query_param(&authorize, "nonce").unwrap();
    let state = query_param(&authorize, "state").unwrap();
    let callback = app.url(&format!("/auth/callback?code=any-code&state={state}"));
    app.http.get(callback).send().await.unwrap()
}

/// An ID token with this defect ends the login with no session (502
/// `invalid_id_token`).
async fn refused(defect: Defect) {
    let (app, response) = login_through(defect).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{defect:?}");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("data-reason=\"invalid_id_token\""),
        "{defect:?}: {html}"
    );
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED,
        "{defect:?} must leave no session"
    );
}

/// A login through this OP succeeds; returns the OP for further checks.
async fn accepted(defect: Defect) -> Op {
    let op = start_op(defect).await;
    let app = spawn_app(&op.issuer).await;
    let response = login_at(&op, &app).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{defect:?}");
    let user: Value = app.get_json("/auth/user").await.json().await.unwrap();
    assert_eq!(user["sub"], "mallory", "{defect:?}");
    op
}

/// One named test per case, named after the OpenID Foundation RP test where
/// there is one (the README's conformance table lists them with their spec).
macro_rules! refused {
    ($($name:ident => $defect:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            refused($defect).await;
        }
    )*};
}

refused! {
    rp_id_token_issuer_mismatch => Defect::WrongIssuer;
    rp_id_token_sub => Defect::SubMissing;
    rp_id_token_aud => Defect::WrongAudience;
    rp_id_token_aud_missing => Defect::AudMissing;
    rp_id_token_iat => Defect::IatMissing;
    rp_nonce_invalid => Defect::WrongNonce;
    rp_id_token_bad_sig_rs256 => Defect::BadSignature;
    rp_id_token_sig_none => Defect::AlgNone;
    rp_id_token_kid_absent_multiple_jwks => Defect::KidAbsentMultipleKeys;
    id_token_with_an_unknown_kid => Defect::UnknownKid;
    id_token_expired => Defect::Expired;
    id_token_hs256_signed_with_the_client_secret => Defect::HmacWithClientSecret;
    id_token_at_hash_mismatch => Defect::AtHashMismatch;
    id_token_not_a_jwt => Defect::NotAJwt;
}

#[tokio::test]
async fn a_well_formed_token_from_the_same_op_is_accepted() {
    accepted(Defect::None).await;
}

/// No `kid` while the OP publishes exactly one key: that key (OIDC Core §10.1).
#[tokio::test]
async fn rp_id_token_kid_absent_single_jwks() {
    accepted(Defect::KidAbsentSingleKey).await;
}

/// Signed with a key the OP rotated to after the app fetched its JWKS: one
/// re-fetch, then accepted (OIDC Core §10.1.1).
#[tokio::test]
async fn rp_key_rotation_op_sign_key() {
    let op = accepted(Defect::RotatedKey).await;
    assert_eq!(
        op.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the old key set at start-up, the rotated one on the unknown kid"
    );
}

/// Logs in, lets the 1 s access token expire, and calls `/auth/userinfo`
/// (which refreshes first): its status and body, and `/auth/user`'s status.
async fn userinfo_after_expiry(defect: Defect) -> (StatusCode, Value, StatusCode) {
    let (app, response) = login_through(defect).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{defect:?}");
    app.wait(Duration::from_millis(1100));
    let info = app.get_json("/auth/userinfo").await;
    let status = info.status();
    let body: Value = info.json().await.unwrap();
    (status, body, app.get_json("/auth/user").await.status())
}

/// A token endpoint failing during a refresh (a 500 HTML page) is the IdP
/// being unavailable, not a refusal: the request gets 503 and the session
/// stays (it is not ended on an IdP hiccup), holding no newer tokens.
#[tokio::test]
async fn a_failing_token_endpoint_does_not_end_the_session_at_refresh() {
    let (status, body, user) = userinfo_after_expiry(Defect::RefreshServerError).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(user, StatusCode::SERVICE_UNAVAILABLE, "kept, not ended");
}

#[tokio::test]
async fn a_good_refresh_keeps_the_session() {
    let (status, body, user) = userinfo_after_expiry(Defect::RefreshGood).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["claims"]["sub"], "mallory");
    assert_eq!(user, StatusCode::OK);
}

/// The IdP rotated its signing key between login and refresh: one JWKS
/// re-fetch, and the refreshed session goes on.
#[tokio::test]
async fn a_refresh_signed_with_a_rotated_key_refetches_the_keys_once() {
    let (status, body, user) = userinfo_after_expiry(Defect::RefreshRotatedKey).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(user, StatusCode::OK);
}

/// OIDC Core §12.2: a refreshed ID token must name the same `sub` and `iss`.
#[tokio::test]
async fn refresh_id_token_with_another_sub_or_iss_ends_the_session() {
    for defect in [Defect::RefreshOtherSub, Defect::RefreshOtherIss] {
        let (status, body, user) = userinfo_after_expiry(defect).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{defect:?}: {body}");
        // The expired token is refreshed before the request is authorized at
        // all (roles follow the IdP), so the ended session is simply gone.
        assert_eq!(body["error"], "unauthenticated", "{defect:?}");
        assert_eq!(user, StatusCode::UNAUTHORIZED, "{defect:?}");
    }
}

/// A userinfo answer about another `sub` is discarded; the session stays.
#[tokio::test]
async fn rp_userinfo_bad_sub_claim() {
    let (status, body, user) = userinfo_after_expiry(Defect::UserinfoOtherSub).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"], "userinfo_invalid");
    assert!(!body.to_string().contains("someone-else"), "{body}");
    assert_eq!(user, StatusCode::OK, "the session stays");
}

/// RFC 7009 at sign-out: the session's refresh token goes to the
/// revocation endpoint discovery names, with the hint and the client's
/// authentication; only after the session has ended.
#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let op = start_op(Defect::None).await;
    let app = spawn_app(&op.issuer).await;
    assert_eq!(login_at(&op, &app).await.status(), StatusCode::SEE_OTHER);
    assert!(op.revocations.lock().unwrap().is_empty());
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let sent = wait_for(|| op.revocations.lock().unwrap().first().cloned()).await;
    let (auth, form) = sent.expect("a revocation request within 5 s");
    assert!(auth.starts_with("Basic "), "client_secret_basic: {auth}");
    assert_eq!(
        form.get("token").map(String::as_str),
        Some("hostile-refresh-token")
    );
    assert_eq!(
        form.get("token_type_hint").map(String::as_str),
        Some("refresh_token")
    );
    assert_eq!(op.revocations.lock().unwrap().len(), 1, "once");
}

/// A step-up login (`max_age` sent) through the OP: the callback's response.
async fn step_up_at(op: &Op, app: &TestApp, authorize: &str) -> reqwest::Response {
    *op.nonce.lock().unwrap() = query_param(authorize, "nonce").unwrap();
    let state = query_param(authorize, "state").unwrap();
    let callback = app.url(&format!("/auth/callback?code=any-code&state={state}"));
    app.http.get(callback).send().await.unwrap()
}

/// OIDC Core §3.1.2.1 / §2: with `max_age` sent, the ID token must say when
/// the user signed in (`auth_time`), recently enough on the IdP's own clock.
/// An IdP that kept an older sign-in is asked once more with `prompt=login`;
/// if it still does not comply, the step-up is refused and no session is
/// made. The same OP's fresh `auth_time` passes (control).
#[tokio::test]
async fn a_step_up_needs_an_auth_time_within_max_age() {
    let op = start_op(Defect::None).await;
    let app = spawn_app(&op.issuer).await;
    let authorize = location(&app.get("/auth/login?max_age=600").await);
    assert_eq!(query_param(&authorize, "max_age").as_deref(), Some("600"));
    let response = step_up_at(&op, &app, &authorize).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "control");

    let op = start_op(Defect::AuthTimeMissing).await;
    let app = spawn_app(&op.issuer).await;
    let authorize = location(&app.get("/auth/login?max_age=600").await);
    let response = step_up_at(&op, &app, &authorize).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.unwrap();
    assert!(html.contains("data-reason=\"step_up_not_met\""), "{html}");
    assert!(html.contains("auth_time"), "{html}");
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let op = start_op(Defect::AuthTimeOld).await;
    let app = spawn_app(&op.issuer).await;
    // Without max_age, an old sign-in is a sign-in (control).
    assert_eq!(login_at(&op, &app).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    let authorize = location(&app.get("/auth/login?max_age=600").await);
    let again = step_up_at(&op, &app, &authorize).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER, "asked once more");
    let again = location(&again);
    assert!(again.starts_with(&op.issuer), "{again}");
    assert_eq!(query_param(&again, "prompt").as_deref(), Some("login"));
    assert_eq!(query_param(&again, "max_age").as_deref(), Some("600"));
    let response = step_up_at(&op, &app, &again).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.unwrap();
    assert!(html.contains("data-reason=\"step_up_not_met\""), "{html}");
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A session ended while its refresh waits at the IdP: the refresh token the
/// IdP then issues is held by no one (the ended session is not written back),
/// so it is revoked too, not left valid at the IdP. The sign-out revoked the
/// token it found; the request that refreshed revokes the one it got.
async fn a_refresh_token_issued_to_an_ended_session_is_revoked(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let op = start_op(Defect::RefreshHeld).await;
    let app = spawn_app_with(&op.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    assert_eq!(login_at(&op, &app).await.status(), StatusCode::SEE_OTHER);
    app.wait(Duration::from_millis(1100));
    let client = app.same_browser();
    let call = tokio::spawn(async move { client.get_json("/auth/userinfo").await.status() });
    tokio::time::timeout(Duration::from_secs(10), op.refresh_arrived.notified())
        .await
        .expect("the expired access token is refreshed at the IdP");
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    op.release_refresh.notify_one();
    assert_eq!(call.await.unwrap(), StatusCode::UNAUTHORIZED, "ended");
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let revoked = wait_for(|| {
        let sent = op.revocations.lock().unwrap();
        (sent.len() >= 2).then(|| {
            let mut tokens: Vec<String> =
                sent.iter().map(|(_, form)| form["token"].clone()).collect();
            tokens.sort();
            tokens
        })
    })
    .await
    .expect("two revocations within 5 s");
    assert_eq!(revoked, ["hostile-refresh-token", "rotated-refresh-token"]);
}

/// A step-up (or a sign-in again) completes while a refresh of the session
/// it replaces waits at the IdP: the refresh finds its session gone, but the
/// IdP session lives on in the new one (same `sid`), so nothing is revoked —
/// revoking would end the grant the new session's tokens may share.
async fn a_refresh_overtaken_by_a_step_up_revokes_nothing(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let op = start_op(Defect::RefreshHeld).await;
    let app = spawn_app_with(&op.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    assert_eq!(login_at(&op, &app).await.status(), StatusCode::SEE_OTHER);
    let old = app.session_cookie().unwrap();
    app.wait(Duration::from_millis(1100));
    let call = tokio::spawn({
        let app = app.same_browser();
        let old = old.clone();
        async move {
            app.get_json_with_cookie(&old, "/auth/userinfo")
                .await
                .status()
        }
    });
    tokio::time::timeout(Duration::from_secs(10), op.refresh_arrived.notified())
        .await
        .expect("the expired access token is refreshed at the IdP");
    let authorize = location(&app.get("/auth/login?max_age=600").await);
    assert_eq!(
        step_up_at(&op, &app, &authorize).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_ne!(
        app.session_cookie().unwrap(),
        old,
        "the step-up rotated the id"
    );
    op.release_refresh.notify_one();
    assert_eq!(
        call.await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "the old id is gone"
    );
    // Long enough for a background revocation to have been sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(op.revocations.lock().unwrap().is_empty(), "nothing revoked");
    // The new session goes on (its own refresh let through at once).
    op.release_refresh.notify_one();
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}

/// A revocation endpoint that never answers costs the sign-out nothing: the
/// session ends and the browser is redirected at once.
#[tokio::test]
async fn a_hanging_revocation_endpoint_does_not_hold_the_sign_out() {
    let op = start_op(Defect::RevocationHangs).await;
    let app = spawn_app(&op.issuer).await;
    assert_eq!(login_at(&op, &app).await.status(), StatusCode::SEE_OTHER);
    let started = std::time::Instant::now();
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the sign-out waited {:?} for the revocation endpoint",
        started.elapsed()
    );
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Polls `f` every 50 ms for up to 5 s.
async fn wait_for<T>(f: impl Fn() -> Option<T>) -> Option<T> {
    for _ in 0..100 {
        if let Some(found) = f() {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// A token endpoint that refuses the code in a way RFC 6749 does not name,
/// or fails outright, ends the login on the sign-in error page with a reason
/// (never a 500 of ours), and no session.
#[tokio::test]
async fn token_endpoint_errors_end_the_login_with_a_clear_page() {
    for (defect, status, reason) in [
        (
            Defect::TokenForbidden,
            StatusCode::BAD_REQUEST,
            "code_rejected",
        ),
        (
            Defect::TokenServerError,
            StatusCode::SERVICE_UNAVAILABLE,
            "idp_unreachable",
        ),
        (
            Defect::TokenEmptyError,
            StatusCode::SERVICE_UNAVAILABLE,
            "idp_unreachable",
        ),
    ] {
        let (app, response) = login_through(defect).await;
        assert_eq!(response.status(), status, "{defect:?}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains(&format!("data-reason=\"{reason}\"")),
            "{defect:?}: {html}"
        );
        assert!(html.contains("Try again"), "{defect:?}: a way on");
        assert_eq!(
            app.get_json("/auth/user").await.status(),
            StatusCode::UNAUTHORIZED,
            "{defect:?} must leave no session"
        );
    }
}

// The index that tells whether the IdP session lives on, and the ended
// session's refusal to be written back, are each store's own.
crate::on_every_store!(
    a_refresh_token_issued_to_an_ended_session_is_revoked,
    a_refresh_overtaken_by_a_step_up_revokes_nothing,
);

/// RFC 8707 §2.2: an IdP that will not issue a token for a remote API's
/// resource (`invalid_target`) costs that API its calls (502
/// `upstream_token_unavailable`, the API never called, no other token sent
/// in its place) and nothing else: the session and its own token stay.
#[tokio::test]
async fn a_resource_the_idp_refuses_gets_no_token_and_keeps_the_session() {
    let op = start_op(Defect::ResourceRefused).await;
    // Nothing listens on the discard port: had the relay sent anything, the
    // answer would be 502 `upstream_unreachable`.
    let app = spawn_app_with(
        &op.issuer,
        &[(
            "API_REMOTES",
            "reports=http://127.0.0.1:9/ GET aud=https://reports.example/",
        )],
    )
    .await;
    let authorize = app.start_login(None).await;
    assert_eq!(
        query_param(&authorize, "resource").as_deref(),
        Some("https://reports.example/"),
        "the authorization request names the API (RFC 8707 §2.1)"
    );
    *op.nonce.lock().unwrap() = query_param(&authorize, "nonce").unwrap();
    let state = query_param(&authorize, "state").unwrap();
    let callback = app.url(&format!("/auth/callback?code=any-code&state={state}"));
    assert_eq!(
        app.http.get(callback).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );

    let relayed = app.get_json("/api/remote/reports/x").await;
    assert_eq!(relayed.status(), StatusCode::BAD_GATEWAY);
    let body: Value = relayed.json().await.unwrap();
    assert_eq!(body["error"], "upstream_token_unavailable", "{body}");
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK,
        "the session's own token still works"
    );
}
