//! Security headers on every kind of response: pages, JSON, errors, static
//! files; `no-referrer` where URLs carry codes; HSTS only on https; a CSP whose
//! only inline scripts are the ones carrying the response's nonce.

use reqwest::StatusCode;

use crate::helpers::*;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let responses = [
        ("/", app.get_page("/").await),
        ("/no-such-page", app.get_page("/no-such-page").await),
        ("/auth/user", app.get_json("/auth/user").await),
        ("/auth/login", app.get("/auth/login").await),
        ("/api/notes", app.get_json("/api/notes").await),
        ("/favicon.svg", app.get("/favicon.svg").await),
        ("/healthz", app.get("/healthz").await),
    ];
    for (path, response) in &responses {
        assert_eq!(
            header(response, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(header(response, "x-frame-options"), Some("DENY"), "{path}");
        let csp = header(response, "content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("base-uri 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        if path.starts_with("/auth/") || path.starts_with("/api/") {
            assert_eq!(
                header(response, "cache-control"),
                Some("no-store"),
                "{path}"
            );
        }
        let referrer = if path.starts_with("/auth/") {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        };
        assert_eq!(
            header(response, "referrer-policy"),
            Some(referrer),
            "{path}"
        );
        assert_eq!(
            header(response, "strict-transport-security"),
            None,
            "{path}: http"
        );
    }
    assert_eq!(responses[2].1.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(responses[3].1.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn https_deployments_get_hsts() {
    let idp = Idp::start().await;
    // Served over plain HTTP here, as behind a TLS-terminating proxy.
    // (A non-loopback origin needs a real client secret: the start-up check.)
    let app = spawn_app_with(
        &idp.issuer,
        &[
            ("APP_BASE_URL", "https://app.example.com"),
            ("OIDC_CLIENT_SECRET", "not-the-development-secret"),
        ],
    )
    .await;
    let response = app.get("/healthz").await;
    assert_eq!(
        header(&response, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}

/// The value of `'nonce-…'` in a page's CSP.
fn csp_nonce(csp: &str) -> String {
    let start = csp.find("'nonce-").expect("the page policy has a nonce") + 7;
    let len = csp[start..].find('\'').unwrap();
    csp[start..start + len].to_string()
}

/// Pages: every script Leptos renders (the hydration module and the streamed
/// resource data) carries the nonce of this very response; the policy allows
/// nothing else inline, allows compiling the wasm, and the nonce changes on
/// every response. Everything that is not a page runs no script at all.
#[tokio::test]
async fn pages_allow_only_their_own_nonced_scripts() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("alice", "alice").await;
    let mut nonces = Vec::new();
    for path in ["/", "/profile", "/notes", "/no-such-page"] {
        let response = app.get_page(path).await;
        assert_eq!(
            header(&response, "cache-control"),
            Some("no-store"),
            "{path}"
        );
        let csp = header(&response, "content-security-policy")
            .unwrap()
            .to_string();
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src "))
            .unwrap_or_else(|| panic!("{path}: no script-src in {csp}"));
        let nonce = csp_nonce(&csp);
        assert_eq!(
            script_src,
            format!("script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'"),
            "{path}"
        );
        assert!(csp.contains("object-src 'none'"), "{csp}");
        assert!(nonce.len() >= 22, "a nonce of at least 128 bits: {nonce}");
        let html = response.text().await.unwrap();
        let scripts = html.matches("<script").count();
        assert!(scripts >= 1, "{path}: the hydration script is missing");
        assert_eq!(
            html.matches(&format!("<script nonce=\"{nonce}\"")).count()
                + html
                    .matches(&format!("<script type=\"module\" nonce=\"{nonce}\""))
                    .count(),
            scripts,
            "{path}: a script without this response's nonce: {html}"
        );
        nonces.push(nonce);
    }
    let mut unique = nonces.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), nonces.len(), "nonces repeat: {nonces:?}");

    for path in ["/auth/user", "/favicon.svg", "/healthz"] {
        let response = app.get_json(path).await;
        let csp = header(&response, "content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("script-src"), "{path}: {csp}");
    }
}

/// Sign-out clears what the app left in the browser (`Clear-Site-Data`). On
/// the way to the IdP's end-session endpoint the cookies are left alone, as the
/// browser would clear the IdP's cookies of the same site too.
#[tokio::test]
async fn logout_clears_site_data() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    app.login("bob", "bob").await;
    let to_idp = app.logout().await;
    assert_eq!(to_idp.status(), StatusCode::SEE_OTHER);
    assert!(location(&to_idp).starts_with(&idp.issuer));
    assert_eq!(header(&to_idp, "clear-site-data"), Some("\"storage\""));

    let local = app.logout().await;
    assert_eq!(local.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&local), "/");
    assert_eq!(
        header(&local, "clear-site-data"),
        Some("\"cookies\", \"storage\"")
    );
}

/// Every response names its request: the caller's `X-Request-Id` (a
/// proxy's) is kept, otherwise each request gets a fresh UUID.
#[tokio::test]
async fn every_request_is_named_by_the_id_it_brings_or_a_fresh_one() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    let id = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let a = id(&app.get("/healthz").await).expect("an id");
    let b = id(&app.get("/nowhere").await).expect("an id on a 404 too");
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    let kept = app
        .http
        .get(app.url("/healthz"))
        .header("X-Request-Id", "proxy-7")
        .send()
        .await
        .unwrap();
    assert_eq!(id(&kept).as_deref(), Some("proxy-7"));
}
