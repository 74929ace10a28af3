//! The whole flow against the real dev IdP over HTTP.

use reqwest::{header, StatusCode};
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn anonymous_user_gets_401_json() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let response = app.get_json("/auth/user").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(
        app.get_json("/auth/userinfo").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn login_user_userinfo_logout_and_401_again() {
    let idp = Idp::start().await;
    // The front-channel request itself is what this test reads: not pushed.
    let app = spawn_app_with(&idp.issuer, &[("OIDC_PAR", "off")]).await;

    // The authorization request carries PKCE S256, state and nonce.
    let authorize = app.start_login(Some("/profile")).await;
    assert!(authorize.starts_with(&idp.issuer), "{authorize}");
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&authorize, "code_challenge").is_some_and(|c| c.len() >= 43));
    assert!(query_param(&authorize, "state").is_some_and(|s| s.len() >= 16));
    assert!(query_param(&authorize, "nonce").is_some_and(|s| s.len() >= 16));
    assert_eq!(
        query_param(&authorize, "response_type").as_deref(),
        Some("code")
    );
    let scope = query_param(&authorize, "scope").unwrap();
    for s in ["openid", "profile", "email", "offline_access"] {
        assert!(scope.split(' ').any(|x| x == s), "{scope}");
    }
    let anonymous_cookie = app
        .session_cookie()
        .expect("login starts a session for the pending state");

    let callback = app.back_from_idp(&authorize, "alice", "alice").await;
    assert!(
        query_param(&callback, "iss").is_some(),
        "the dev IdP sends RFC 9207 iss"
    );
    let response = app.http.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/profile", "return_to is honoured");

    // The session id rotated at login (no fixation) and the cookie is locked down.
    let set_cookie = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(set_cookie.len(), 1, "{set_cookie:?}");
    let cookie = &set_cookie[0];
    assert!(cookie.starts_with("gatehouse_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http dev origin: {cookie}"
    );
    let signed_in_cookie = app.session_cookie().unwrap();
    assert_ne!(
        anonymous_cookie, signed_in_cookie,
        "session id must rotate at login"
    );

    // /auth/user: the contract's fields, and never a token.
    let response = app.get_json("/auth/user").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let text = response.text().await.unwrap();
    assert!(!contains_jwt(&text), "{text}");
    let user: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(user["name"], "Alice Liddell");
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["email_verified"], true);
    assert!(user["sub"].as_str().is_some_and(|s| !s.is_empty()));
    let roles: Vec<&str> = user["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(roles, ["admin", "user"]);
    let session = &user["session"];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let idle = session["idle_expires_at"].as_i64().unwrap();
    let absolute = session["absolute_expires_at"].as_i64().unwrap();
    assert!(
        (now + 29 * 60..=now + 31 * 60).contains(&idle),
        "idle {idle} vs now {now}"
    );
    assert!((now + 12 * 3600 - 60..=now + 12 * 3600 + 60).contains(&absolute));
    for claim in user["id_token_claims"].as_array().unwrap() {
        assert!(!contains_jwt(claim["value"].as_str().unwrap()));
    }

    // /auth/userinfo: fetched from the IdP now, with the server-held access token.
    let response = app.get_json("/auth/userinfo").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!contains_jwt(&text));
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["claims"]["sub"], user["sub"]);
    assert!(
        info["claims"]["updated_at"].is_number(),
        "userinfo has what the ID token lacks: {info}"
    );

    // Logout: local session gone, then RP-initiated logout at the IdP.
    let response = app.logout().await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let end_session = location(&response);
    assert!(
        end_session.starts_with(&format!("{}/protocol/openid-connect/logout", idp.issuer)),
        "{end_session}"
    );
    assert!(query_param(&end_session, "id_token_hint").is_some_and(|t| contains_jwt(&t)));
    assert_eq!(
        query_param(&end_session, "post_logout_redirect_uri"),
        Some(app.url("/auth/logged-out"))
    );
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Finish the logout at the IdP; it sends the browser back to the app.
    let current = walk_idp_logout(&app.http, &end_session).await;
    assert!(
        current.starts_with(&app.url("/auth/logged-out?state=")),
        "the IdP returns to post_logout_redirect_uri: {current}"
    );
    let home = app.http.get(&current).send().await.unwrap();
    assert_eq!(location(&home), "/");

    // Signing in again asks for the password again (the IdP session ended).
    let authorize = app.start_login(None).await;
    match app.at_idp(&authorize, "alice", "wrong-password").await {
        IdpOutcome::StayedOnIdp(html) => {
            assert!(html.contains("Invalid username or password"), "{html}")
        }
        IdpOutcome::Callback(url) => panic!("the IdP skipped the password after logout: {url}"),
    }
}

#[tokio::test]
async fn wrong_password_stays_on_the_idp() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let authorize = app.start_login(None).await;
    match app.at_idp(&authorize, "bob", "alice").await {
        IdpOutcome::StayedOnIdp(html) => assert!(html.contains("Invalid username or password")),
        IdpOutcome::Callback(url) => panic!("wrong password was accepted: {url}"),
    }
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn state_mismatch_is_rejected_with_no_session() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let callback = app.callback_url_for("alice", "alice", None).await;
    for tampered in [
        with_param(&callback, "state", Some("forged-state-value")),
        with_param(&callback, "state", None),
        with_param(&callback, "state", Some("")),
    ] {
        let response = app.http.get(&tampered).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let html = response.text().await.unwrap();
        assert!(html.contains("data-reason=\"unknown_state\""), "{html}");
        assert!(html.contains("Try again"));
        assert_eq!(
            app.get_json("/auth/user").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn callback_replay_is_rejected() {
    let idp = Idp::start().await;
    // The front-channel request itself is what this test reads: not pushed.
    let app = spawn_app_with(&idp.issuer, &[("OIDC_PAR", "off")]).await;
    let callback = app.callback_url_for("bob", "bob", None).await;
    let first = app.http.get(&callback).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);

    // The same response again: its state was consumed.
    let replay = app.http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.text().await.unwrap().contains("unknown_state"));

    // The same code under a fresh, valid state: the IdP refuses the used code.
    let authorize = app.start_login(None).await;
    let fresh_state = query_param(&authorize, "state").unwrap();
    let replay = with_param(&callback, "state", Some(&fresh_state));
    let response = app.http.get(&replay).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("code_rejected"));
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rfc9207_iss_must_match_and_is_required_when_advertised() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    for iss in [Some("https://evil.example/realms/demo"), None] {
        let callback = app.callback_url_for("alice", "alice", None).await;
        let response = app
            .http
            .get(with_param(&callback, "iss", iss))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.text().await.unwrap().contains("issuer_mismatch"));
        assert_eq!(
            app.get_json("/auth/user").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn return_to_only_ever_leads_to_this_site() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    for (asked, landed) in [
        ("https://evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/profile?tab=claims", "/profile?tab=claims"),
    ] {
        let callback = app.callback_url_for("alice", "alice", Some(asked)).await;
        let response = app.http.get(&callback).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), landed, "return_to={asked}");
    }
}

#[tokio::test]
async fn two_tabs_logging_in_at_once_both_succeed() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let tab_a = app.start_login(Some("/a")).await;
    let tab_b = app.start_login(Some("/b")).await;
    let callback_b = app.back_from_idp(&tab_b, "alice", "alice").await;
    // Tab A continues at the IdP, which now has a session and skips the form.
    let callback_a = app.back_from_idp(&tab_a, "alice", "alice").await;
    let b = app.http.get(&callback_b).send().await.unwrap();
    assert_eq!(
        (b.status(), location(&b)),
        (StatusCode::SEE_OTHER, "/b".to_string())
    );
    let a = app.http.get(&callback_a).send().await.unwrap();
    assert_eq!(
        (a.status(), location(&a)),
        (StatusCode::SEE_OTHER, "/a".to_string())
    );
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn signup_asks_the_idp_for_registration() {
    let idp = Idp::start().await;
    // The front-channel request itself is what this test reads: not pushed.
    let app = spawn_app_with(&idp.issuer, &[("OIDC_PAR", "off")]).await;
    let response = app.get("/auth/signup?return_to=/profile").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let authorize = location(&response);
    assert_eq!(query_param(&authorize, "prompt").as_deref(), Some("create"));
    // The IdP shows its sign-up form for it.
    let mut current = authorize;
    let html = loop {
        let r = app.http.get(&current).send().await.unwrap();
        if r.status().is_redirection() {
            current = url::Url::parse(&current)
                .unwrap()
                .join(&location(&r))
                .unwrap()
                .to_string();
        } else {
            break r.text().await.unwrap();
        }
    };
    assert!(html.contains("name=\"email\""), "{html}");
}

#[tokio::test]
async fn idp_down_keeps_public_pages_and_recovers_without_restart() {
    let port = free_port();
    let issuer = format!("http://localhost:{port}/realms/demo");
    let app = spawn_app(&issuer).await;

    let home = app.get("/").await;
    assert_eq!(home.status(), StatusCode::OK);
    assert!(home.text().await.unwrap().contains("Sign in"));
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    let login = app.get("/auth/login").await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = login.text().await.unwrap();
    assert!(html.contains("Identity provider unreachable"), "{html}");
    assert!(html.contains("Try again"));

    let _idp = Idp::start_on(port, &[]).await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let response = app.login("alice", "alice").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
}

/// Every protected page answers an anonymous visitor with a real HTTP
/// redirect to the login, whatever the client's `Accept` header: a 200 with a
/// `Location` (what `leptos_axum::redirect` gives a client that does not ask
/// for HTML) leaves a browser without JavaScript on "Redirecting…".
#[tokio::test]
async fn protected_pages_redirect_anonymous_visitors_to_login() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    for page in ["/profile", "/sessions", "/notes", "/admin"] {
        let expected = format!("/auth/login?return_to={page}");
        for accept in [None, Some("text/html,application/xhtml+xml"), Some("*/*")] {
            let mut request = app.http.get(app.url(page));
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::FOUND,
                "{page} with Accept {accept:?}"
            );
            assert_eq!(
                location(&response),
                expected,
                "{page} with Accept {accept:?}"
            );
        }
    }
}

#[tokio::test]
async fn profile_redirects_anonymous_visitors_to_login() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let response = app.get_page("/profile").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response), "/auth/login?return_to=/profile");

    let callback = app
        .callback_url_for("alice", "alice", Some("/profile"))
        .await;
    app.http.get(&callback).send().await.unwrap();
    let page = app.get_page("/profile").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Alice Liddell") && html.contains("alice@example.com"));
    assert!(!contains_jwt(&html), "SSR HTML must not carry a token");
}

#[tokio::test]
async fn activity_extends_the_idle_deadline_and_inactivity_ends_the_session() {
    let idp = Idp::start().await;
    let app = spawn_app_with(&idp.issuer, &[("SESSION_IDLE_TIMEOUT", "3s")]).await;
    app.login("alice", "alice").await;
    // Active for twice the idle timeout: still signed in.
    for _ in 0..6 {
        app.wait(std::time::Duration::from_millis(1000));
        assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
    }
    // Idle for longer than the timeout: the session is gone.
    app.wait(std::time::Duration::from_millis(3500));
    assert_eq!(
        app.get_json("/auth/user").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// With a pushed request (the dev IdP has a PAR endpoint) the push is what
/// notices; without one (`OIDC_PAR=off`), the discovery probe before the
/// redirect.
#[tokio::test]
async fn an_idp_that_goes_down_after_discovery_is_noticed_at_login() {
    for par in ["auto", "off"] {
        a_dead_idp_is_noticed_at_login(par).await;
    }
}

async fn a_dead_idp_is_noticed_at_login(par: &str) {
    let port = free_port();
    let idp = Idp::start_on(port, &[]).await;
    let app = spawn_app_with(&idp.issuer, &[("OIDC_PAR", par)]).await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    drop(idp);
    // The port stays ours while the IdP is down, refusing every connection:
    // another test's IdP picking this free port would answer for it.
    let dead = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let refusing = tokio::spawn(async move {
        while let Ok((connection, _)) = dead.accept().await {
            drop(connection);
        }
    });

    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let login = app.get("/auth/login").await;
    assert_eq!(
        login.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "never send the browser to a dead IdP (OIDC_PAR={par})"
    );
    assert!(login.text().await.unwrap().contains("idp_unreachable"));

    refusing.abort();
    let _ = refusing.await;
    let _idp = Idp::start_on(port, &[]).await;
    assert_eq!(
        app.login("bob", "bob").await.status(),
        StatusCode::SEE_OTHER
    );
}

/// An IdP that hangs after discovery (SIGSTOP: its socket still accepts,
/// nothing answers) ends the login on the "unreachable" page within seconds,
/// with a pushed request (5 s) or the probe (3 s) alike, instead of holding
/// the browser for the IdP client's 15 s; and the next login after it is
/// back goes through.
#[tokio::test]
async fn an_idp_that_hangs_is_given_up_on_within_seconds() {
    let idp = Idp::start().await;
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &idp.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    for par in ["auto", "off"] {
        let app = spawn_app_with(&idp.issuer, &[("OIDC_PAR", par)]).await;
        signal("-STOP");
        let asked = std::time::Instant::now();
        let login =
            tokio::time::timeout(std::time::Duration::from_secs(12), app.get("/auth/login")).await;
        let took = asked.elapsed();
        signal("-CONT");
        let login = login.unwrap_or_else(|_| panic!("the login hung (OIDC_PAR={par})"));
        assert_eq!(
            login.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "OIDC_PAR={par}"
        );
        assert!(
            took < std::time::Duration::from_secs(8),
            "OIDC_PAR={par}: {took:?}"
        );
        assert!(login.text().await.unwrap().contains("idp_unreachable"));
        assert_eq!(
            app.login("bob", "bob").await.status(),
            StatusCode::SEE_OTHER
        );
    }
}

#[tokio::test]
async fn the_sqlite_store_keeps_sessions_across_a_restart() {
    let idp = Idp::start().await;
    let dir = std::env::temp_dir().join(format!("gatehouse-sqlite-{}", free_port()));
    let store = format!("sqlite://{}/sessions.db", dir.display());
    let first = spawn_app_with(&idp.issuer, &[("SESSION_STORE", &store)]).await;
    assert_eq!(
        first.login("alice", "alice").await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(
        dir.join("sessions.db").exists(),
        "the store creates its directory and file"
    );

    // A new process on the same database: the same cookie is still signed in.
    // (Cookies do not depend on the port, so `first`'s jar is sent to `second`.)
    let second = spawn_app_with(&idp.issuer, &[("SESSION_STORE", &store)]).await;
    let response = first.get_json_at(&second, "/auth/user").await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["name"], "Alice Liddell");
    let _ = std::fs::remove_dir_all(dir);
}

/// RFC 9126: the dev IdP names a PAR endpoint, so by default (`OIDC_PAR=auto`)
/// the authorization request is pushed server to server, authenticated, and
/// the browser carries only `client_id` and the `request_uri`: no state,
/// nonce, PKCE challenge, scope or redirect URI it could read or change.
/// The login completes, with a refresh token (offline_access kept).
#[tokio::test]
async fn pushed_authorization_requests_leave_the_browser_only_a_request_uri() {
    let idp = Idp::start_with(&[("IDP_EXPOSE_TOKENS_FOR_TESTS", "1")]).await;
    let app = spawn_app(&idp.issuer).await;
    let authorize = app.start_login(Some("/profile")).await;
    let url = url::Url::parse(&authorize).unwrap();
    let mut names: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
    names.sort();
    assert_eq!(names, ["client_id", "request_uri"], "{authorize}");
    assert_eq!(
        query_param(&authorize, "client_id").as_deref(),
        Some("gatehouse")
    );
    assert!(query_param(&authorize, "request_uri")
        .unwrap()
        .starts_with("urn:ietf:params:oauth:request_uri:"));
    let callback = app.back_from_idp(&authorize, "alice", "alice").await;
    let signed_in = app.http.get(callback).send().await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/profile");
    assert_eq!(app.get_json("/auth/user").await.status(), StatusCode::OK);
    assert_eq!(
        idp.issued_refresh_tokens().await.len(),
        1,
        "offline_access kept"
    );
}

/// A pushed request's `request_uri` serves one sign-in (RFC 9126 §4, §7.3):
/// the authorization URL replayed after use — by this browser or by one that
/// captured it — gets no code from the IdP, and a second login started in the
/// same browser gets a `request_uri` of its own.
#[tokio::test]
async fn a_used_request_uri_cannot_be_replayed() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let authorize = app.start_login(None).await;
    let callback = app.back_from_idp(&authorize, "alice", "alice").await;
    assert_eq!(
        app.http.get(callback).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let again = app.start_login(None).await;
    assert_ne!(
        query_param(&again, "request_uri"),
        query_param(&authorize, "request_uri")
    );
    for browser in [app.same_browser(), app.second_browser()] {
        let replayed = browser.http.get(&authorize).send().await.unwrap();
        // The IdP answers with an error response, never a code.
        let answer = location(&replayed);
        assert_eq!(
            query_param(&answer, "error").as_deref(),
            Some("invalid_request_uri"),
            "{answer}"
        );
        assert!(query_param(&answer, "code").is_none(), "{answer}");
    }
}

/// `OIDC_PAR=required` against an IdP without a PAR endpoint: the login
/// ends on the error page (misconfigured), and the browser never goes to an
/// authorization endpoint with the request in the clear.
#[tokio::test]
async fn par_required_without_a_par_endpoint_is_a_configuration_error() {
    let op = crate::hostile_idp::start_op(crate::hostile_idp::Defect::None).await;
    let app = spawn_app_with(&op.issuer, &[("OIDC_PAR", "required")]).await;
    let response = app.get("/auth/login").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let html = response.text().await.unwrap();
    assert!(html.contains("data-reason=\"idp_misconfigured\""), "{html}");
    // The same OP with PAR left on auto: the front channel, as before.
    let app = spawn_app(&op.issuer).await;
    let authorize = location(&app.get("/auth/login").await);
    assert!(query_param(&authorize, "state").is_some(), "{authorize}");
}
