//! DPoP (RFC 9449) at our API: a token bound to a key (the dev IdP binds
//! the machine client's token to the key of the proof it was asked with)
//! counts only with a fresh proof of that key for this very request, never as
//! a plain bearer token, and a proof counts once — across instances on Redis.

use gatehouse::auth::dpop::DpopKey;
use reqwest::{header, Method, StatusCode};
use serde_json::Value;

use crate::{helpers::*, on_every_store};

const DEV_API_AUDIENCE: &str = "http://localhost:3000/api";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A machine token bound to `key`: client credentials with a DPoP proof,
/// once more with the nonce the IdP asks for (§8).
async fn bound_token(idp: &Idp, key: &DpopKey) -> String {
    let url = url::Url::parse(&format!(
        "{}/protocol/openid-connect/token",
        idp.issuer.replace("localhost", &idp.host)
    ))
    .unwrap();
    let mut nonce: Option<String> = None;
    for _ in 0..2 {
        let response = reqwest::Client::new()
            .post(url.clone())
            .basic_auth("gatehouse-m2m", Some("gatehouse-m2m-secret"))
            .header(
                "DPoP",
                key.proof("POST", &url, None, nonce.as_deref(), now()),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "notes:read"),
            ])
            .send()
            .await
            .unwrap();
        let fresh = response
            .headers()
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap();
        if body["error"] == "use_dpop_nonce" {
            nonce = fresh;
            continue;
        }
        assert_eq!(body["token_type"], "DPoP", "{body}");
        return body["access_token"].as_str().unwrap().to_string();
    }
    panic!("the IdP kept asking for a nonce");
}

async fn call(app: &TestApp, scheme: &str, token: &str, proofs: &[String]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(Method::GET, app.url("/api/notes"))
        .header(header::AUTHORIZATION, format!("{scheme} {token}"));
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    request.send().await.unwrap()
}

fn notes_url(app: &TestApp) -> url::Url {
    url::Url::parse(&app.url("/api/notes")).unwrap()
}

async fn refused_as(response: reqwest::Response, error: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
    if error == "invalid_dpop_proof" {
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("algs=\"ES256"),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn a_bound_token_counts_only_with_a_fresh_proof_of_its_key_for_this_request() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("API_AUDIENCE", DEV_API_AUDIENCE)]).await;
    let key = DpopKey::generate();
    let token = bound_token(&idp, &key).await;
    let url = notes_url(&app);

    let proof = key.proof("GET", &url, Some(&token), None, now());
    let ok = call(&app, "DPoP", &token, std::slice::from_ref(&proof)).await;
    assert_eq!(ok.status(), StatusCode::OK, "{}", ok.text().await.unwrap());

    // The same proof again: a replay.
    refused_as(
        call(&app, "DPoP", &token, &[proof]).await,
        "invalid_dpop_proof",
    )
    .await;
    // No downgrade: the bound token as a bearer token, or without a proof.
    refused_as(call(&app, "Bearer", &token, &[]).await, "invalid_token").await;
    refused_as(call(&app, "DPoP", &token, &[]).await, "invalid_dpop_proof").await;
    // A proof of another key, for another URL or method, for another token,
    // from too long ago, or two proofs at once.
    let other = DpopKey::generate();
    let elsewhere = url::Url::parse(&app.url("/api/admin/users")).unwrap();
    let wrong = [
        other.proof("GET", &url, Some(&token), None, now()),
        key.proof("GET", &elsewhere, Some(&token), None, now()),
        key.proof("POST", &url, Some(&token), None, now()),
        key.proof("GET", &url, Some("another-token"), None, now()),
        key.proof("GET", &url, Some(&token), None, now() - 300),
        key.proof("GET", &url, None, None, now()),
    ];
    for proof in wrong {
        refused_as(
            call(&app, "DPoP", &token, &[proof]).await,
            "invalid_dpop_proof",
        )
        .await;
    }
    let two = [
        key.proof("GET", &url, Some(&token), None, now()),
        key.proof("GET", &url, Some(&token), None, now()),
    ];
    refused_as(call(&app, "DPoP", &token, &two).await, "invalid_dpop_proof").await;

    // An unbound token does not become bound by a proof.
    let plain = idp
        .post_form(
            "/protocol/openid-connect/token",
            ("gatehouse-m2m", "gatehouse-m2m-secret"),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "notes:read"),
            ],
        )
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let proof = key.proof("GET", &url, Some(&plain), None, now());
    refused_as(call(&app, "DPoP", &plain, &[proof]).await, "invalid_token").await;
    assert_eq!(
        call(&app, "Bearer", &plain, &[]).await.status(),
        StatusCode::OK
    );
}

/// The same proof sent eight times at once, to two instances behind one
/// public URL sharing the store: exactly one is accepted (on Redis across
/// the instances; the memory and SQLite stores keep the replay cache per
/// process, as each runs alone).
async fn a_proof_sent_at_once_many_times_counts_once(kind: StoreKind) {
    let idp = Idp::start().await;
    let store = TestStore::start(kind).await;
    let settings = [
        ("API_AUDIENCE", DEV_API_AUDIENCE),
        ("SESSION_STORE", store.url.as_str()),
    ];
    let first = spawn_app_with(&idp.issuer, &settings).await;
    let second = match kind {
        StoreKind::Redis => {
            let mut behind_one_url = settings.to_vec();
            behind_one_url.push(("APP_BASE_URL", first.base.as_str()));
            spawn_app_with(&idp.issuer, &behind_one_url).await
        }
        _ => first.same_browser(),
    };
    let key = DpopKey::generate();
    let token = bound_token(&idp, &key).await;
    let proof = key.proof("GET", &notes_url(&first), Some(&token), None, now());
    let calls = (0..8).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        let (token, proof) = (token.clone(), proof.clone());
        async move {
            reqwest::Client::new()
                .get(app.url("/api/notes"))
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("DPoP", proof)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(calls).await;
    let accepted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(accepted, 1, "{kind:?}: {statuses:?}");
}

on_every_store!(a_proof_sent_at_once_many_times_counts_once);
