//! Token refresh against the real dev IdP. Access tokens live a minute, and
//! the tests let that minute pass on the app's clock (`app.wait`), so a slow
//! machine cannot make a token expire before the test means it to.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{helpers::*, on_every_store};

/// A little more than the dev IdP's access-token lifetime (`IDP_ACCESS_TOKEN_TTL=60`).
const TOKEN_LIFETIME: Duration = Duration::from_secs(61);

async fn refresh_count(idp: &Idp) -> u64 {
    idp.stats().await["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap()
}

/// Fifty calls at once with an expired access token: one refresh grant, and
/// every call answered with the new token — on every store, with bearer
/// tokens and with DPoP-bound ones (a proof per grant, the IdP's nonce).
async fn concurrent_calls_with_an_expiring_token_refresh_once(kind: StoreKind) {
    for dpop in ["0", "1"] {
        let idp = Idp::start_with(&[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
        let store = TestStore::start(kind).await;
        let app = spawn_app_with(
            &idp.issuer,
            &[("SESSION_STORE", store.url.as_str()), ("OIDC_DPOP", dpop)],
        )
        .await;
        assert_eq!(
            app.login("alice", "alice").await.status(),
            StatusCode::SEE_OTHER
        );
        assert_eq!(
            app.get_json("/auth/userinfo").await.status(),
            StatusCode::OK
        );
        assert_eq!(
            refresh_count(&idp).await,
            0,
            "a fresh token is not refreshed"
        );

        app.wait(TOKEN_LIFETIME);
        let calls = (0..50).map(|_| app.get_json("/auth/userinfo"));
        let responses = futures::future::join_all(calls).await;
        for r in responses {
            assert_eq!(r.status(), StatusCode::OK, "{kind:?}, OIDC_DPOP={dpop}");
        }
        assert_eq!(
            refresh_count(&idp).await,
            1,
            "{kind:?}, OIDC_DPOP={dpop}: single-flight: one refresh for 50 concurrent calls"
        );

        // The rotated refresh token was stored: a second round refreshes again, fine.
        app.wait(TOKEN_LIFETIME);
        assert_eq!(
            app.get_json("/auth/userinfo").await.status(),
            StatusCode::OK
        );
        assert_eq!(refresh_count(&idp).await, 2);
        let user: Value = app.get_json("/auth/user").await.json().await.unwrap();
        let expires = user["session"]["access_token_expires_at"].as_i64().unwrap();
        assert!(
            expires >= app.clock.unix_now(),
            "the stored access token is the fresh one"
        );
    }
}

on_every_store!(concurrent_calls_with_an_expiring_token_refresh_once);

#[tokio::test]
async fn a_refused_refresh_ends_the_session_cleanly() {
    let port = free_port();
    let idp = Idp::start_on(port, &[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
    let app = spawn_app(&idp.issuer).await;
    app.login("bob", "bob").await;
    // A restarted dev IdP has forgotten every grant: the refresh token is now invalid.
    drop(idp);
    let _idp = Idp::start_on(port, &[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
    app.wait(TOKEN_LIFETIME);

    // Every signed-in request refreshes an expired token before it is
    // authorized; the refused refresh ends the session there and then.
    let response = app.get_json("/auth/userinfo").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_unreachable_idp_is_not_a_logout() {
    let port = free_port();
    let idp = Idp::start_on(port, &[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    drop(idp);
    app.wait(TOKEN_LIFETIME);
    let response = app.get_json("/auth/userinfo").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The expired token's claims cannot be confirmed, so nothing is
    // authorized on them (503, fail closed) — but the session stays: a 401
    // would mean it had been ended.
    let user = app.get_json("/auth/user").await;
    assert_eq!(
        user.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the session stays"
    );
    let body: Value = user.json().await.unwrap();
    assert_eq!(body["error"], "idp_unreachable");
}
