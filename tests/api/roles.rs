//! Authority follows the IdP: a role removed there stops counting everywhere
//! the session authorizes (`/auth/user`, the `/admin` page, the admin server
//! functions, `RequireRole` JSON routes) within one access-token lifetime,
//! because an expired access token is refreshed before any decision and the
//! roles are taken from the new ID token. While the token is fresh, no
//! request calls the IdP. On every store.

use std::time::Duration;

use gatehouse::pages::admin::AdminOverview;
use leptos::server_fn::ServerFn;
use reqwest::StatusCode;
use serde_json::Value;

use crate::{helpers::*, on_every_store};

/// The dev IdP's access-token lifetime here (s). Long, because the test lets
/// it pass on the app's clock: nothing expires by itself on a slow machine.
const TOKEN_TTL: u64 = 60;

fn refreshes(stats: &Value) -> i64 {
    stats["token_requests"]["refresh_token"].as_i64().unwrap()
}

async fn roles_of(app: &TestApp) -> Vec<String> {
    let user: Value = app.get_json("/auth/user").await.json().await.unwrap();
    serde_json::from_value(user["roles"].clone()).unwrap_or_default()
}

/// Whether each place that checks the role still lets alice in as an admin.
async fn admin_everywhere(app: &TestApp) -> [bool; 4] {
    [
        roles_of(app).await.iter().any(|r| r == "admin"),
        app.get_page("/admin").await.status() == StatusCode::OK,
        app.server_fn(<AdminOverview as ServerFn>::PATH, &[])
            .await
            .status()
            == StatusCode::OK,
        app.get_json("/api/admin/users").await.status() == StatusCode::OK,
    ]
}

async fn a_role_removed_at_the_idp_stops_counting_within_one_token_lifetime(kind: StoreKind) {
    let store = TestStore::start(kind).await;
    let ttl = TOKEN_TTL.to_string();
    let idp = Idp::start_with(&[
        ("IDP_ACCESS_TOKEN_TTL", ttl.as_str()),
        ("IDP_EXPOSE_TOKENS_FOR_TESTS", "1"),
    ])
    .await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_STORE", store.url.as_str())]).await;
    assert_eq!(
        app.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(admin_everywhere(&app).await, [true; 4], "{kind:?}");

    // The common case is free: while the token is fresh, nothing asks the IdP.
    let before = refreshes(&idp.stats().await);
    for _ in 0..10 {
        assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
    }
    assert_eq!(refreshes(&idp.stats().await), before, "{kind:?}");

    idp.set_roles("alice", &["user"]).await;
    // One token lifetime later (the app's clock, not a sleep), every place
    // refuses at once: the first of these requests refreshed.
    app.wait(Duration::from_secs(TOKEN_TTL + 1));
    assert_eq!(
        admin_everywhere(&app).await,
        [false; 4],
        "{kind:?}: still admin (user, page, server fn, API) one token lifetime after the role was removed"
    );
    assert_eq!(
        refreshes(&idp.stats().await),
        before + 1,
        "{kind:?}: one refresh"
    );
    // Still signed in, as a user.
    assert_eq!(roles_of(&app).await, vec!["user".to_string()], "{kind:?}");
    assert_eq!(
        app.get_page("/admin").await.status(),
        StatusCode::FORBIDDEN,
        "{kind:?}"
    );
}

on_every_store!(a_role_removed_at_the_idp_stops_counting_within_one_token_lifetime);
