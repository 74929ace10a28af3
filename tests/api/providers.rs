//! Deployment shapes: a split network (`OIDC_BACKCHANNEL_BASE_URL`), several
//! providers at once (`OIDC_PROVIDERS`) with the mix-up defence, and extra
//! authorization parameters (`OIDC_EXTRA_AUTH_PARAMS`). All against real dev
//! IdPs over HTTP.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

const INTERNAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

/// The IdP listens on 127.0.0.2 only. The browser reaches its public URL
/// (`http://localhost:P`) because its `localhost` resolves there; the app's
/// `localhost` is 127.0.0.1, where nothing listens — as in docker compose,
/// where `localhost:8080` inside the app container is not Keycloak. Only the
/// back-channel base URL makes sign-in, userinfo, refresh and readiness work.
#[tokio::test]
async fn backchannel_base_url_carries_every_server_call_while_the_browser_uses_the_public_url() {
    let port = free_port();
    let idp = Idp::start_at("127.0.0.2", port, &[("IDP_ACCESS_TOKEN_TTL", "60")]).await;
    assert_eq!(idp.issuer, format!("http://localhost:{port}/realms/demo"));

    // Without the base URL, the app cannot reach the IdP at its public URL.
    let cut_off = spawn_app(&idp.issuer)
        .await
        .with_browser_resolving_localhost_to(&[INTERNAL, LOCAL]);
    assert_eq!(
        cut_off.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let page = cut_off.get("/auth/login").await;
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().await.unwrap().contains("idp_unreachable"));

    let internal = format!("http://127.0.0.2:{port}");
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("OIDC_BACKCHANNEL_BASE_URL", internal.as_str()),
            ("OIDC_REFRESH_LEEWAY", "1s"),
        ],
    )
    .await
    .with_browser_resolving_localhost_to(&[INTERNAL, LOCAL]);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);

    // The browser is sent to the public authorize URL, never the internal one.
    let authorize = app.start_login(None).await;
    assert!(authorize.starts_with(&idp.issuer), "{authorize}");
    let callback = match app.at_idp(&authorize, "alice", "alice").await {
        IdpOutcome::Callback(url) => url,
        IdpOutcome::StayedOnIdp(html) => panic!("{html}"),
    };
    // The token exchange and ID-token check (issuer still the public one).
    let response = app.http.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let user: Value = app.get_json("/auth/user").await.json().await.unwrap();
    assert_eq!(user["sub"].as_str().map(str::len), Some(36), "{user}");

    // A minute later (on the app's clock) the access token has expired:
    // userinfo first refreshes (token endpoint), then calls userinfo — both
    // through the internal address.
    app.wait(std::time::Duration::from_secs(61));
    let info = app.get_json("/auth/userinfo").await;
    assert_eq!(info.status(), StatusCode::OK);
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["claims"]["preferred_username"], "alice");
    assert_eq!(idp.stats().await["token_requests"]["refresh_token"], 1);

    // Logout sends the browser to the public end-session URL.
    let logout = app.logout().await;
    assert!(location(&logout).starts_with(&idp.issuer));
}

/// Two real IdPs behind one app: a chooser, a login at either, and a response
/// from one delivered to a login started at the other is refused.
#[tokio::test]
async fn several_providers_choose_sign_in_and_refuse_mixed_up_responses() {
    let first = Idp::start().await;
    let second = Idp::start().await;
    let app = spawn_app_with(
        &first.issuer,
        &[
            ("OIDC_LABEL", "First IdP"),
            ("OIDC_PROVIDERS", "second"),
            ("OIDC_SECOND_ISSUER_URL", second.issuer.as_str()),
            ("OIDC_SECOND_CLIENT_ID", "gatehouse"),
            ("OIDC_SECOND_CLIENT_SECRET", "gatehouse-dev-secret"),
            ("OIDC_SECOND_LABEL", "Second <IdP>"),
            // The front-channel requests are what this test reads: not pushed.
            ("OIDC_PAR", "off"),
            ("OIDC_SECOND_PAR", "off"),
        ],
    )
    .await;

    // "Sign in" shows a chooser (escaped labels, links carry return_to).
    let chooser = app.get("/auth/login?return_to=/profile").await;
    assert_eq!(chooser.status(), StatusCode::OK);
    let html = chooser.text().await.unwrap();
    assert!(
        html.contains(r#"href="/auth/login?idp=default&amp;return_to=%2Fprofile""#),
        "{html}"
    );
    assert!(
        html.contains(r#"href="/auth/login?idp=second&amp;return_to=%2Fprofile""#),
        "{html}"
    );
    assert!(
        html.contains("First IdP") && html.contains("Second &lt;IdP&gt;"),
        "{html}"
    );
    let unknown = app.get("/auth/login?idp=nope").await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.text().await.unwrap().contains("unknown_provider"));

    // A login started at the first IdP (state A), and one at the second
    // whose authorization response (code B, iss B) the attacker replays
    // against state A: refused before any code is redeemed. The second IdP
    // sends its responses to its own redirect URI.
    let to_first = app.start_login_at("default").await;
    assert!(to_first.starts_with(&first.issuer), "{to_first}");
    let to_second = app.start_login_at("second").await;
    assert!(to_second.starts_with(&second.issuer), "{to_second}");
    assert_eq!(
        query_param(&to_second, "redirect_uri").unwrap(),
        app.url("/auth/callback/second")
    );
    let from_second = match app.at_idp(&to_second, "bob", "bob").await {
        IdpOutcome::Callback(url) => url,
        IdpOutcome::StayedOnIdp(html) => panic!("{html}"),
    };
    assert!(from_second.starts_with(&app.url("/auth/callback/second?")));
    let state_a = query_param(&to_first, "state").unwrap();
    let mixed = with_param(&from_second, "state", Some(&state_a));
    let refused = app.http.get(&mixed).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("provider_mismatch"));
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Moved to the first IdP's redirect URI: stripping `iss` does not help
    // (the first IdP advertises RFC 9207), and claiming the first IdP's `iss`
    // sends code B to the first IdP, which refuses it.
    let at_first_callback = from_second.replace("/auth/callback/second?", "/auth/callback?");
    for iss in [None, Some(first.issuer.as_str())] {
        let state = query_param(&app.start_login_at("default").await, "state").unwrap();
        let forged = with_param(
            &with_param(&at_first_callback, "state", Some(&state)),
            "iss",
            iss,
        );
        let refused = app.http.get(&forged).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "iss {iss:?}");
        let reason = if iss.is_none() {
            "issuer_mismatch"
        } else {
            "code_rejected"
        };
        assert!(
            refused.text().await.unwrap().contains(reason),
            "iss {iss:?}"
        );
        assert_eq!(
            app.get_json("/auth/user").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    // The genuine response to the second login still signs bob in there.
    let response = app.http.get(&from_second).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let user: Value = app.get_json("/auth/user").await.json().await.unwrap();
    assert_eq!(user["name"], "Bob Builder", "{user}");
    // Userinfo and logout go to the provider the session came from.
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        first.stats().await["token_requests"]["authorization_code"],
        1
    );
    assert_eq!(
        second.stats().await["token_requests"]["authorization_code"],
        1
    );
    let logout = app.logout().await;
    assert!(
        location(&logout).starts_with(&second.issuer),
        "{}",
        location(&logout)
    );
    // One provider down: still ready (the other signs people in), and
    // /readyz says which one is down.
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["providers"]["second"]["ok"], true, "{ready}");
    drop(second);
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["idp"]["ok"], false, "{ready}");
    assert_eq!(ready["providers"]["default"]["ok"], true, "{ready}");
    assert_eq!(ready["providers"]["second"]["ok"], false, "{ready}");
}

#[tokio::test]
async fn extra_auth_params_reach_the_idp_but_never_override_the_flow() {
    let idp = Idp::start().await;
    let app = spawn_app_with(
        &idp.issuer,
        &[
            (
                "OIDC_EXTRA_AUTH_PARAMS",
                "kc_idp_hint=github&ui_locales=de&prompt=login",
            ),
            // The front-channel request is what this test reads: not pushed.
            ("OIDC_PAR", "off"),
        ],
    )
    .await;
    let authorize = app.start_login(None).await;
    assert_eq!(
        query_param(&authorize, "kc_idp_hint").as_deref(),
        Some("github")
    );
    assert_eq!(query_param(&authorize, "ui_locales").as_deref(), Some("de"));
    assert_eq!(query_param(&authorize, "prompt").as_deref(), Some("login"));
    // The IdP accepts them and the login completes.
    let callback = match app.at_idp(&authorize, "alice", "alice").await {
        IdpOutcome::Callback(url) => url,
        IdpOutcome::StayedOnIdp(html) => panic!("{html}"),
    };
    assert_eq!(
        app.http.get(&callback).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    // Sign-up replaces a configured prompt with `create`, once.
    let signup = location(&app.second_browser().get("/auth/signup").await);
    let prompts: Vec<_> = url::Url::parse(&signup)
        .unwrap()
        .query_pairs()
        .filter(|(k, _)| k == "prompt")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(prompts, ["create"]);
}

/// Alice signs in through both IdPs (the dev IdP gives her the same `sub` in
/// both): to Gatehouse they are two people. Notes one creates are not the
/// other's, and logging out at the second IdP ends only the session from there.
#[tokio::test]
async fn backchannel_logout_from_one_provider_ends_only_its_sessions() {
    let (first_port, second_port) = (free_port(), free_port());
    let first_issuer = format!("http://localhost:{first_port}/realms/demo");
    let second_issuer = format!("http://localhost:{second_port}/realms/demo");
    let via_first = spawn_app_with(
        &first_issuer,
        &[
            ("OIDC_PROVIDERS", "second"),
            ("OIDC_SECOND_ISSUER_URL", second_issuer.as_str()),
            ("OIDC_SECOND_CLIENT_ID", "gatehouse"),
            ("OIDC_SECOND_CLIENT_SECRET", "gatehouse-dev-secret"),
        ],
    )
    .await;
    let via_second = via_first.second_browser();
    let logout_uri = via_first.url("/auth/backchannel-logout");
    let env = [("IDP_BACKCHANNEL_LOGOUT_URI", logout_uri.as_str())];
    let _first = Idp::start_on(first_port, &env).await;
    let second = Idp::start_on(second_port, &env).await;

    for (browser, idp) in [(&via_first, "default"), (&via_second, "second")] {
        let authorize = browser.start_login_at(idp).await;
        let callback = match browser.at_idp(&authorize, "alice", "alice").await {
            IdpOutcome::Callback(url) => url,
            IdpOutcome::StayedOnIdp(html) => panic!("{html}"),
        };
        let response = browser.http.get(&callback).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let sub = |v: Value| v["sub"].as_str().unwrap().to_string();
    assert_eq!(
        sub(via_first.get_json("/auth/user").await.json().await.unwrap()),
        sub(via_second
            .get_json("/auth/user")
            .await
            .json()
            .await
            .unwrap()),
        "the same sub at both IdPs"
    );
    // Same `sub`, different people: the notes of one are not the other's.
    let created = via_first
        .http
        .post(via_first.url("/api/notes"))
        .header("X-CSRF", "1")
        .json(&serde_json::json!({ "text": "first IdP's alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let texts = |v: Value| v.to_string();
    let mine = texts(via_first.get_json("/api/notes").await.json().await.unwrap());
    assert!(mine.contains("first IdP's alice"), "{mine}");
    let theirs = texts(
        via_second
            .get_json("/api/notes")
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(theirs, "[]", "the second IdP's alice sees no notes");

    walk_idp_logout(
        &via_second.http,
        &format!("{second_issuer}/protocol/openid-connect/logout"),
    )
    .await;
    assert!(
        via_second.signed_out_within(30).await,
        "the second IdP's back-channel logout ends its session"
    );
    assert!(
        second.stats().await["backchannel_logouts_sent"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(
        via_first.get_json("/auth/user").await.status(),
        StatusCode::OK
    );
}

/// RFC 9700 §4.4.2 mix-up, with IdPs that do not implement RFC 9207: the
/// victim starts a login at the attacker's IdP, which bounces the browser to
/// the honest IdP with the same `state` (and the redirect URI the app
/// registered there). The honest IdP sends its code back; it must never reach
/// the attacker's token endpoint. Each provider has its own redirect URI, so
/// the response arrives at the honest provider's callback, for a login that
/// was sent to the attacker's: refused before any code is redeemed.
#[tokio::test]
async fn a_mix_up_without_iss_is_refused_before_the_code_goes_anywhere() {
    let honest = Idp::start_with(&[("IDP_NO_ISS", "1")]).await;
    let attacker = Idp::start_with(&[("IDP_NO_ISS", "1")]).await;
    let app = spawn_app_with(
        &honest.issuer,
        &[
            ("OIDC_PROVIDERS", "evil"),
            ("OIDC_EVIL_ISSUER_URL", attacker.issuer.as_str()),
            ("OIDC_EVIL_CLIENT_ID", "gatehouse"),
            ("OIDC_EVIL_CLIENT_SECRET", "gatehouse-dev-secret"),
            // The attack bounces a front-channel request: not pushed. (With
            // PAR the bounced request_uri is unknown at the honest IdP.)
            ("OIDC_PAR", "off"),
            ("OIDC_EVIL_PAR", "off"),
        ],
    )
    .await;
    for (name, idp) in [("honest", &honest), ("attacker", &attacker)] {
        let discovery: Value =
            reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_ne!(
            discovery["authorization_response_iss_parameter_supported"], true,
            "the {name} IdP must not advertise RFC 9207 here"
        );
    }

    let to_attacker = app.start_login_at("evil").await;
    assert!(to_attacker.starts_with(&attacker.issuer), "{to_attacker}");
    // The attacker's authorization endpoint answers with a redirect to the
    // honest one, keeping every parameter but the redirect URI, which must
    // be one the honest IdP has registered for this client.
    let bounced = with_param(
        &to_attacker.replacen(&attacker.issuer, &honest.issuer, 1),
        "redirect_uri",
        Some(&app.url("/auth/callback")),
    );
    let response = match app.at_idp(&bounced, "alice", "alice").await {
        IdpOutcome::Callback(url) => url,
        IdpOutcome::StayedOnIdp(html) => panic!("{html}"),
    };
    assert!(query_param(&response, "iss").is_none(), "{response}");
    assert!(
        response.starts_with(&app.url("/auth/callback?")),
        "{response}"
    );
    let refused = app.http.get(&response).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("provider_mismatch"));
    assert_eq!(
        attacker.stats().await["token_requests"]["authorization_code"],
        0,
        "the honest IdP's code reached the attacker's token endpoint"
    );
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}
