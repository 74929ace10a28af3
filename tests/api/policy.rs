//! Every route of the router, one by one, against the anti-forgery rule of its
//! route group: a forged write is refused everywhere, a forged JSON read is
//! refused everywhere but on the named navigations, and the only route without
//! any check is on the named exemption list below.
//!
//! The routes are enumerated from what builds the router, not from a list kept
//! beside it: every `.route("…")` in `src/` (so a route added anywhere, in a
//! group or not, is checked), the Leptos pages, and the server functions.

use std::collections::BTreeSet;

use reqwest::{header, Method, StatusCode};

use crate::helpers::*;

/// Routes in a navigation group, which a page on another site may GET:
/// top-level navigations (a link to sign in, the IdP's redirect back to the
/// callback and the IdP's return after sign-out, the event stream an
/// `EventSource` opens, probes, static files;
/// sign-out is a form post from our own pages, and has no GET). Every Leptos
/// page is one too (the page group). Their writes are still checked.
const NAVIGATIONS: &[&str] = &[
    "/auth/login",
    "/auth/signup",
    "/auth/callback",
    "/auth/callback/{idp}",
    "/auth/logout",
    "/auth/logged-out",
    "/auth/events",
    "/healthz",
    "/readyz",
    "/pkg/{*file}",
];

/// Routes of listeners other than the public one, which the public router
/// must not serve at all: `/metrics` answers on `METRICS_ADDR` only.
const OTHER_LISTENERS: &[&str] = &["/metrics"];

/// Routes without any anti-forgery check, and why.
const EXEMPT: &[(&str, &str)] = &[
    (
        "/auth/backchannel-logout",
        "the IdP's server-to-server POST: no cookie rides on it, it proves itself \
         with a signed logout token (OpenID Back-Channel Logout 1.0 §2.5)",
    ),
    (
        "/auth/jwks.json",
        "public keys the IdP fetches (RFC 7517): GET only, the same for everyone, \
         nothing about the caller's session",
    ),
];

/// Every `.route("/<path>", …)` in the crate's source.
fn routes_in_source() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut rest = text.as_str();
                while let Some(at) = rest.find(".route(") {
                    rest = &rest[at + ".route(".len()..];
                    let arg = rest.trim_start();
                    // Router paths start with `/` (`idp_http` has a `route`
                    // method of its own, over full URLs).
                    if let Some(literal) = arg.strip_prefix("\"/") {
                        let end = literal.find('"').unwrap();
                        found.insert(format!("/{}", &literal[..end]));
                    }
                }
            }
        }
    }
    found
}

/// A concrete URL path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with("{*") {
                "x/y"
            } else if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the anti-forgery check refused `response`, with its status and
/// (for a 403) body for the failure message. Other bodies are not read:
/// `/auth/events` answers with a stream that stays open.
async fn csrf_refusal(response: reqwest::Response) -> (bool, StatusCode, String) {
    let status = response.status();
    if status != StatusCode::FORBIDDEN {
        return (false, status, String::new());
    }
    let body = response.text().await.unwrap_or_default();
    (body.contains(r#""error":"csrf""#), status, body)
}

#[tokio::test]
async fn every_route_has_the_anti_forgery_check_of_its_group() {
    let idp = Idp::start().await;
    let app = spawn_app(&idp.issuer).await;
    // A real session: the forged requests carry its cookie, as a browser would.
    app.login("alice", "alice").await;
    assert!(app.session_cookie().is_some());

    let server_fns: BTreeSet<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.to_string())
        .collect();
    // The page list names the server functions too, as routes the pages
    // leave to the JSON group.
    let pages: BTreeSet<String> = gatehouse::server::page_routes()
        .iter()
        .map(|listing| listing.path().to_string())
        .filter(|path| !server_fns.contains(path))
        .collect();
    let hand_written = routes_in_source();
    // The enumeration finds what it must (so an empty scan cannot pass).
    for known in ["/auth/user", "/auth/logout", "/api/notes", "/healthz"] {
        assert!(hand_written.contains(known), "{known} not found in src/");
    }
    assert!(
        pages.contains("/profile") && pages.contains("/admin"),
        "{pages:?}"
    );
    assert!(
        server_fns.iter().any(|p| p.contains("current_user")),
        "{server_fns:?}"
    );
    for listed in NAVIGATIONS
        .iter()
        .chain(EXEMPT.iter().map(|(p, _)| p))
        .chain(OTHER_LISTENERS)
    {
        assert!(hand_written.contains(*listed), "stale list entry {listed}");
    }
    for elsewhere in OTHER_LISTENERS {
        assert_eq!(
            app.get_json(elsewhere).await.status(),
            StatusCode::NOT_FOUND,
            "{elsewhere} on the public listener"
        );
    }
    let hand_written: BTreeSet<String> = hand_written
        .into_iter()
        .filter(|path| !OTHER_LISTENERS.contains(&path.as_str()))
        .collect();

    let mut routes: Vec<(String, &str)> = Vec::new();
    for page in &pages {
        routes.push((page.clone(), "page"));
    }
    for path in &server_fns {
        routes.push((path.clone(), "server function"));
    }
    for path in &hand_written {
        routes.push((path.clone(), "route"));
    }
    // The fallback (static files, the 404 page) is a navigation too.
    routes.push(("/no-such-route".into(), "fallback"));

    let forged_origins = [
        // A modern browser on another site.
        vec![
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        // A sibling subdomain: same site, another origin.
        vec![
            ("origin", "https://other.localhost"),
            ("sec-fetch-site", "same-site"),
        ],
        // An old browser: no Origin, no Fetch Metadata, no header.
        vec![],
    ];
    let mut checked = 0;
    for (pattern, kind) in &routes {
        let url = app.url(&concrete(pattern));
        let exempt = EXEMPT.iter().any(|(p, _)| p == pattern);
        let navigation =
            kind == &"page" || kind == &"fallback" || NAVIGATIONS.contains(&pattern.as_str());
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            for forged in &forged_origins {
                let mut request = app
                    .http
                    .request(method.clone(), &url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body("a=b");
                for (name, value) in forged {
                    request = request.header(*name, *value);
                }
                let (refused, status, body) = csrf_refusal(request.send().await.unwrap()).await;
                assert_eq!(
                    refused, !exempt,
                    "{method} {pattern} ({kind}) forged {forged:?}: {status} {body}"
                );
                checked += 1;
            }
        }
        // A JSON read from another site (`fetch` with credentials), and one
        // with no proof at all.
        for forged in &forged_origins {
            let mut request = app.http.get(&url);
            for (name, value) in forged {
                request = request.header(*name, *value);
            }
            let (refused, status, body) = csrf_refusal(request.send().await.unwrap()).await;
            assert_eq!(
                refused,
                !(exempt || navigation),
                "GET {pattern} ({kind}) forged {forged:?}: {status} {body}"
            );
            checked += 1;
        }
        // The app's own call passes the check (so the refusals above are the
        // check's, not the route's): same origin, `X-CSRF: 1`.
        let response = app
            .http
            .get(&url)
            .header("x-csrf", "1")
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        let (refused, status, body) = csrf_refusal(response).await;
        assert!(
            !refused,
            "GET {pattern} ({kind}) with proof: {status} {body}"
        );
    }
    assert!(checked > 100, "only {checked} requests checked");
    // The session the forged requests rode on is still there: none of them
    // signed alice out.
    let me = app.get_json("/auth/user").await;
    assert_eq!(me.status(), StatusCode::OK);
}
