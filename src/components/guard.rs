//! Page guards: anonymous visitors go to the login (on whichever side runs),
//! signed-in users without the page's role get a real 403 page.

use leptos::prelude::*;

use crate::{components::current_user::UserResource, types::UserView};

/// Renders `children` with the signed-in user; the login for anonymous
/// visitors (a `302` during SSR, a full navigation in the browser), an error
/// when the session could not be checked.
///
/// The children take the user: `<RequireLogin return_to="/profile" let:user>`.
/// This only decides what to show: the data behind a page comes from server
/// functions and APIs that check the session again on the server. Resources
/// a page needs belong above this component, not in its children (leptos#4866,
/// see `pages::admin`).
#[component]
pub fn RequireLogin<C, V>(
    /// Where the login should come back to.
    return_to: &'static str,
    /// What the error says before the reason (with its trailing space), when
    /// the session could not be checked.
    #[prop(optional)]
    error_prefix: &'static str,
    /// The page for the signed-in user.
    children: C,
) -> impl IntoView
where
    C: Fn(UserView) -> V + Send + Sync + Clone + 'static,
    V: IntoView + 'static,
{
    let user = expect_context::<UserResource>();
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let children = children.clone();
                Suspend::new(async move {
                    match user.await {
                        Ok(Some(u)) => children(u.view()).into_any(),
                        Ok(None) => view! { <RedirectToLogin return_to/> }.into_any(),
                        Err(e) => view! { <p class="error">{format!("{error_prefix}{e}")}</p> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

/// Renders `children` for a signed-in user with `role`; a 403 page (status 403
/// during SSR, no redirect) for other signed-in users; the login for anonymous
/// visitors ([`RequireLogin`]). This only decides what to show: the data behind
/// the page comes from server functions that check the role again on the server.
#[component]
pub fn RequireRole(
    role: &'static str,
    /// Where the login should come back to.
    return_to: &'static str,
    children: ChildrenFn,
) -> impl IntoView {
    view! {
        <RequireLogin return_to let:user>
            {if user.has_role(role) {
                children().into_any()
            } else {
                view! { <Forbidden role/> }.into_any()
            }}
        </RequireLogin>
    }
}

/// What an anonymous visitor of a signed-in page sees while [`require_login`]
/// sends them to the login.
#[component]
pub fn RedirectToLogin(
    /// Where the login should come back to.
    return_to: &'static str,
) -> impl IntoView {
    require_login(return_to);
    view! { <p>"Redirecting to sign in…"</p> }
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

/// The sign-in that meets a step-up (`AppError::StepUpRequired`: at most
/// `max_age` seconds old, of one of `acr_values`) and comes back to `return_to`.
pub fn step_up_url(return_to: &str, max_age: Option<u64>, acr_values: Option<&str>) -> String {
    let mut url = login_url(return_to);
    if let Some(max_age) = max_age {
        url.push_str(&format!("&max_age={max_age}"));
    }
    if let Some(acr_values) = acr_values {
        url.push_str("&acr_values=");
        url.push_str(&encode_component(acr_values));
    }
    url
}

/// What a page whose data needs a more recent sign-in shows: "Confirm it's
/// you", a link to the sign-in that meets the step-up and comes back here.
/// With `redirect`, the page goes there at once (a `302` during SSR, a full
/// navigation in the browser), as [`RedirectToLogin`] does for visitors;
/// without it (an action refused after the page loaded) the person chooses.
#[component]
pub fn ConfirmItsYou(
    return_to: &'static str,
    max_age: Option<u64>,
    acr_values: Option<String>,
    #[prop(optional)] redirect: bool,
) -> impl IntoView {
    let url = step_up_url(return_to, max_age, acr_values.as_deref());
    if redirect {
        redirect_to(&url);
    }
    view! {
        <section class="notice step-up" data-testid="step-up">
            <p>"This needs a recent sign-in. Confirm it's you to continue; you come back here."</p>
            <p><a class="button primary" rel="external" href=url>"Confirm it's you"</a></p>
        </section>
    }
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
    redirect_to(&login_url(return_to));
}

/// Sends the browser to `url`, a server route of this site, as
/// [`require_login`] describes.
fn redirect_to(url: &str) {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        use axum::http::{header, HeaderValue, StatusCode};
        if let Ok(location) = HeaderValue::from_str(url) {
            response.insert_header(header::LOCATION, location);
            response.set_status(StatusCode::FOUND);
        }
    }
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().set_href(url);
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

    #[test]
    fn step_up_url_asks_for_what_the_401_named() {
        assert_eq!(
            step_up_url("/admin", Some(600), Some("urn:mfa urn:hwk")),
            "/auth/login?return_to=/admin&max_age=600&acr_values=urn%3Amfa%20urn%3Ahwk"
        );
        assert_eq!(
            step_up_url("/admin", None, None),
            "/auth/login?return_to=/admin"
        );
    }
}
