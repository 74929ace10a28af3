//! The start-up self-check against the IdP: a discovery document naming
//! another issuer, or an IdP without PKCE S256, stops `server::build` with one
//! line saying why; an IdP that does not answer yet does not.

use std::collections::HashMap;

use axum::{routing::get, Json, Router};
use gatehouse::server::{self, config::Config};
use leptos::config::LeptosOptions;
use serde_json::{json, Value};

use crate::helpers::free_port;

/// A provider whose discovery document is `edit`ed from a well-formed one.
async fn fake_idp(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!(
        "http://127.0.0.1:{}/realms/demo",
        listener.local_addr().unwrap().port()
    );
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/certs"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
    });
    edit(doc.as_object_mut().unwrap());
    let router = Router::new()
        .route(
            "/realms/demo/.well-known/openid-configuration",
            get(move || async move { Json(doc) }),
        )
        .route(
            "/realms/demo/certs",
            get(|| async { Json(json!({ "keys": [] })) }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    issuer
}

async fn build(issuer: &str) -> Result<(), String> {
    let env: HashMap<&str, String> = [
        ("OIDC_ISSUER_URL", issuer.to_string()),
        ("SESSION_STORE", "memory".into()),
        ("APP_DATABASE_URL", "sqlite::memory:".into()),
    ]
    .into();
    let config = Config::from_lookup(&move |k: &str| env.get(k).cloned()).unwrap();
    let options = LeptosOptions::builder().output_name("gatehouse").build();
    server::build(config, options).await.map(|_| ())
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_refuses_to_start() {
    let issuer = fake_idp(|doc| {
        doc.insert("issuer".into(), json!("http://127.0.0.1:1/realms/other"));
    })
    .await;
    let err = build(&issuer).await.unwrap_err();
    assert!(
        err.contains("issuer") && err.contains("realms/other"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

#[tokio::test]
async fn an_idp_without_pkce_s256_refuses_to_start() {
    let issuer = fake_idp(|doc| {
        doc.insert("code_challenge_methods_supported".into(), json!(["plain"]));
    })
    .await;
    let err = build(&issuer).await.unwrap_err();
    assert!(err.contains("S256"), "{err}");
}

#[tokio::test]
async fn a_well_formed_idp_or_one_that_is_down_lets_the_app_start() {
    build(&fake_idp(|_| {}).await).await.unwrap();
    build(&format!("http://127.0.0.1:{}/realms/demo", free_port()))
        .await
        .unwrap();
}
