//! Client authentication other than `client_secret_basic`, against the real
//! dev IdP: `private_key_jwt` (RFC 7523, OIDC Core §9) with the dev IdP's
//! `gatehouse-key` client, which has no secret and knows only the public key
//! of `end2end/idp/dev-client-key.pem`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/end2end/idp/dev-client-key.pem"
);

/// Sign-in (the pushed request and the code exchange), a refresh and the
/// revocation at sign-out each authenticate with a fresh client assertion:
/// the IdP holds no secret for this client, so each step succeeding is the
/// assertion being accepted. `/auth/jwks.json` publishes the public key only.
#[tokio::test]
async fn private_key_jwt_signs_in_refreshes_and_revokes_without_a_secret() {
    let idp = Idp::start_with(&[("IDP_EXPOSE_TOKENS_FOR_TESTS", "1")]).await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("OIDC_CLIENT_ID", "gatehouse-key"),
            ("OIDC_CLIENT_AUTH", "private_key_jwt"),
            ("OIDC_CLIENT_KEY_FILE", KEY_FILE),
        ],
    )
    .await;
    let authorize = app.start_login(None).await;
    assert!(query_param(&authorize, "request_uri").is_some(), "pushed");
    assert_eq!(
        query_param(&authorize, "client_id").as_deref(),
        Some("gatehouse-key")
    );
    let callback = app.back_from_idp(&authorize, "alice", "alice").await;
    let signed_in = app.http.get(callback).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let token = idp
        .issued_refresh_tokens_of("gatehouse-key")
        .await
        .pop()
        .expect("a refresh token for gatehouse-key");

    // The access token runs out: the refresh grant authenticates the same way.
    app.wait(Duration::from_secs(301));
    let before = idp.stats().await["token_requests"]["refresh_token"].as_u64();
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK
    );
    let after = idp.stats().await["token_requests"]["refresh_token"].as_u64();
    assert_eq!(after, before.map(|n| n + 1), "one refresh");

    let jwks: Value = app.get_json("/auth/jwks.json").await.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(
        keys[0]["kid"].as_str().is_some_and(|k| k.len() == 43),
        "{jwks}"
    );
    assert!(
        keys[0].get("d").is_none() && keys[0].get("p").is_none(),
        "public only"
    );

    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    let rotated = idp
        .issued_refresh_tokens_of("gatehouse-key")
        .await
        .pop()
        .unwrap();
    assert_ne!(rotated, token, "the refresh rotated it");
    assert!(
        idp.revoked_soon(&rotated).await,
        "revoked with an assertion"
    );
}

/// Without `private_key_jwt` the key set is empty; a client whose IdP does
/// not know its key cannot sign in (the IdP refuses the assertion: the login
/// ends on the error page, no session).
#[tokio::test]
async fn the_key_set_is_empty_without_a_key_and_a_wrong_key_is_refused() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let jwks: Value = app.get_json("/auth/jwks.json").await.json().await.unwrap();
    assert_eq!(jwks, serde_json::json!({"keys": []}));

    // The hostile OP's signing key is a valid RSA key the IdP never saw.
    let wrong = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/attacker-key.pem"
    );
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("OIDC_CLIENT_ID", "gatehouse-key"),
            ("OIDC_CLIENT_AUTH", "private_key_jwt"),
            ("OIDC_CLIENT_KEY_FILE", wrong),
        ],
    )
    .await;
    let response = app.get("/auth/login").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let html = response.text().await.unwrap();
    assert!(html.contains("data-reason=\"request_rejected\""), "{html}");
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// RS256 is not the only RSA signature: with `OIDC_CLIENT_KEY_ALG=PS256`
/// (RSASSA-PSS) the dev IdP's `gatehouse-key-ps` client, which accepts
/// PS256 assertions only, lets the same RSA key sign in and refresh, here
/// read from a private JWK; `/auth/jwks.json` says PS256. RS256 assertions
/// are refused by that client.
#[tokio::test]
async fn private_key_jwt_signs_ps256_with_an_rsa_key_from_a_jwk() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    use rsa::{
        pkcs1::DecodeRsaPrivateKey,
        pkcs8::DecodePrivateKey,
        traits::{PrivateKeyParts, PublicKeyParts},
        RsaPrivateKey,
    };
    let pem = std::fs::read_to_string(KEY_FILE).unwrap();
    let key = RsaPrivateKey::from_pkcs1_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(&pem))
        .unwrap();
    let b64 = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
    let jwk = serde_json::json!({
        "kty": "RSA",
        "n": b64(key.n()), "e": b64(key.e()), "d": b64(key.d()),
        "p": b64(&key.primes()[0]), "q": b64(&key.primes()[1]),
    });
    let file = std::env::temp_dir().join(format!("gatehouse-ps256-{}.json", free_port()));
    std::fs::write(&file, jwk.to_string()).unwrap();
    let file = file.to_string_lossy().into_owned();

    let idp = Idp::start().await;
    let settings = |alg| {
        [
            ("OIDC_CLIENT_ID", "gatehouse-key-ps"),
            ("OIDC_CLIENT_AUTH", "private_key_jwt"),
            ("OIDC_CLIENT_KEY_FILE", file.as_str()),
            ("OIDC_CLIENT_KEY_ALG", alg),
        ]
    };
    let app = spawn_app_with(&idp.issuer, &settings("PS256")).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    app.wait(Duration::from_secs(301));
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK,
        "the refresh grant authenticated with PS256 too"
    );
    let jwks: Value = app.get_json("/auth/jwks.json").await.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "PS256", "{jwks}");
    assert!(jwks["keys"][0].get("d").is_none(), "public only: {jwks}");

    let rs256 = spawn_app_with(&idp.issuer, &settings("RS256")).await;
    let response = rs256.get("/auth/login").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("data-reason=\"request_rejected\""));
    std::fs::remove_file(&file).unwrap();
}

/// A P-256 key (`dev-client-key-ec.pem`) signs ES256 assertions: the dev
/// IdP's `gatehouse-key-ec` client, registered for ES256 with that public
/// key only, lets it sign in and refresh; `/auth/jwks.json` publishes it as
/// an EC key. The RSA key is refused by that client.
#[tokio::test]
async fn private_key_jwt_with_a_p256_key_signs_es256_assertions() {
    let idp = Idp::start().await;
    let ec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/end2end/idp/dev-client-key-ec.pem"
    );
    let settings = |key| {
        [
            ("OIDC_CLIENT_ID", "gatehouse-key-ec"),
            ("OIDC_CLIENT_AUTH", "private_key_jwt"),
            ("OIDC_CLIENT_KEY_FILE", key),
        ]
    };
    let app = spawn_app_with(&idp.issuer, &settings(ec)).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    app.wait(Duration::from_secs(301));
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK
    );
    let jwks: Value = app.get_json("/auth/jwks.json").await.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(key.get("d").is_none(), "public only: {jwks}");

    let rsa = spawn_app_with(&idp.issuer, &settings(KEY_FILE)).await;
    let response = rsa.get("/auth/login").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("data-reason=\"request_rejected\""));
}
