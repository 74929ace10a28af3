//! Page guards: anonymous visitors go to the login (on whichever side runs),
//! signed-in users without the page's role get a real 403 page.

use leptos::prelude::*;

use crate::components::current_user::UserResource;

/// Renders `children` for a signed-in user with `role`; a 403 page (status 403
/// during SSR, no redirect) for other signed-in users; the login for anonymous
/// visitors. This only decides what to show: the data behind the page comes
/// from server functions that check the role again on the server.
#[component]
pub fn RequireRole(
    role: &'static str,
    /// Where the login should come back to.
    return_to: &'static str,
    children: ChildrenFn,
) -> impl IntoView {
    let user = expect_context::<UserResource>();
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let children = children.clone();
                Suspend::new(async move {
                    match user.await {
                        Ok(Some(u)) if u.has_role(role) => children().into_any(),
                        Ok(Some(_)) => view! { <Forbidden role/> }.into_any(),
                        Ok(None) => {
                            require_login(return_to);
                            view! { <p>"Redirecting to sign in…"</p> }.into_any()
                        }
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// The 403 page: signed in, but without the role the page needs.
#[component]
pub fn Forbidden(role: &'static str) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::FORBIDDEN);
    }
    view! {
        <section class="error-page" data-testid="forbidden">
            <h1>"Not allowed"</h1>
            <p class="lead">"You are signed in, but this page needs the role " <code>{role}</code> "."</p>
            <p class="reason">"403 Forbidden. Ask an administrator for the role, then sign in again."</p>
            <p><a class="button" href="/">"Home"</a></p>
        </section>
    }
}

/// The login URL that comes back to `return_to` (a path on this site).
pub fn login_url(return_to: &str) -> String {
    format!("/auth/login?return_to={}", encode_component(return_to))
}

/// Redirects to the login: an HTTP redirect during SSR, a full navigation in
/// the browser (the login is a server route, not a client-side one).
///
/// During SSR this is always a `302 Found` with `Location`, whatever the
/// request's `Accept` says. (`leptos_axum::redirect` sets the status only when
/// `Accept` names `text/html` and otherwise answers 200 with a `Location` that
/// browsers and HTTP clients ignore: the visitor would stay on a
/// "Redirecting…" page. Only page renders call this, never server functions.)
pub fn require_login(return_to: &str) {
    let url = login_url(return_to);
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        use axum::http::{header, HeaderValue, StatusCode};
        if let Ok(location) = HeaderValue::from_str(&url) {
            response.insert_header(header::LOCATION, location);
            response.set_status(StatusCode::FOUND);
        }
    }
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_href(&url);
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let _ = url;
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_url_encodes_the_return_path() {
        assert_eq!(login_url("/profile"), "/auth/login?return_to=/profile");
        assert_eq!(
            login_url("/a?b=c&d#e"),
            "/auth/login?return_to=/a%3Fb%3Dc%26d%23e"
        );
    }
}
