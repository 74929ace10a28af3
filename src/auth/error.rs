//! How auth failures reach people in a browser flow (login, callback): a
//! small self-contained HTML page with a short machine-readable reason that
//! never echoes what the request sent. JSON answers are
//! [`ApiError`](super::api_error::ApiError)'s.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};

use super::{idp::IdpError, return_to::ReturnTo};

/// Why a browser login did not end signed in.
#[derive(Debug)]
pub enum LoginError {
    /// No pending login for this `state` (forged, replayed, or older than 10 minutes).
    UnknownState,
    /// RFC 9207: `iss` differs from our issuer, or is missing while advertised.
    IssuerMismatch,
    /// The response arrived at another provider's redirect URI than the one
    /// the login was sent to (RFC 9700 §4.4.2).
    ProviderMismatch,
    /// The IdP sent the user back with an OAuth error (e.g. `access_denied`).
    Denied(String),
    MissingCode,
    /// `?idp=` names no configured provider, or a pending login's provider
    /// is no longer configured.
    UnknownProvider,
    Idp(IdpError),
    Store(String),
    /// `max_age` or `acr_values` on `/auth/login` that are not a number of
    /// seconds (at most a year) or class references.
    InvalidStepUp,
    /// A step-up's ID token does not meet what was asked (no `auth_time`
    /// although `max_age` was sent, or another `acr`); the message says which.
    StepUpNotMet(&'static str),
    /// A step-up's ID token says the user signed in longer ago than
    /// `max_age` allows: the IdP ignored it (asked again once with
    /// `prompt=login`, then refused).
    StaleSignIn,
    /// A step-up signed in another user than the session's.
    StepUpOtherUser,
    /// The IdP refused the pushed authorization request itself (RFC 9126
    /// §2.3: e.g. `invalid_client`, `invalid_request`), before any sign-in.
    RequestRefused(String),
}

impl LoginError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            Self::UnknownState => (
                StatusCode::BAD_REQUEST,
                "unknown_state",
                "Sign-in could not be completed",
                "This sign-in response does not match a sign-in started in this browser, \
                 or it was already used or is more than 10 minutes old."
                    .into(),
            ),
            Self::ProviderMismatch => (
                StatusCode::BAD_REQUEST,
                "provider_mismatch",
                "Sign-in could not be completed",
                "The response arrived for a different identity provider than the one \
                 this sign-in was sent to."
                    .into(),
            ),
            Self::IssuerMismatch => (
                StatusCode::BAD_REQUEST,
                "issuer_mismatch",
                "Sign-in could not be completed",
                "The response came from a different identity provider than the one \
                 this sign-in was sent to."
                    .into(),
            ),
            Self::Denied(code) => (
                StatusCode::FORBIDDEN,
                "denied",
                "Sign-in was not completed",
                format!("The identity provider answered: {}.", sanitize_code(code)),
            ),
            Self::MissingCode => (
                StatusCode::BAD_REQUEST,
                "missing_code",
                "Sign-in could not be completed",
                "The identity provider's response has no authorization code.".into(),
            ),
            Self::UnknownProvider => (
                StatusCode::BAD_REQUEST,
                "unknown_provider",
                "Sign-in could not be started",
                "This application has no identity provider by that name.".into(),
            ),
            Self::Idp(IdpError::Unreachable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "idp_unreachable",
                "Identity provider unreachable",
                "The identity provider cannot be reached right now. Public pages still \
                 work; please try signing in again in a moment."
                    .into(),
            ),
            Self::Idp(IdpError::Misconfigured(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "idp_misconfigured",
                "Sign-in is misconfigured",
                "The identity provider's configuration does not match this application. \
                 The administrator has been told in the server log."
                    .into(),
            ),
            Self::RequestRefused(_) => (
                StatusCode::BAD_REQUEST,
                "request_rejected",
                "Sign-in could not start",
                "The identity provider refused this app's sign-in request. This is a \
                 configuration problem (the client's credentials or registration), not \
                 something you did; please tell the site's administrators."
                    .into(),
            ),
            Self::Idp(IdpError::Rejected(_)) => (
                StatusCode::BAD_REQUEST,
                "code_rejected",
                "Sign-in could not be completed",
                "The identity provider refused to complete this sign-in (the code may \
                 have been used already or expired)."
                    .into(),
            ),
            Self::Idp(IdpError::BadResponse(_)) | Self::Idp(IdpError::IdToken(_)) => (
                StatusCode::BAD_GATEWAY,
                "invalid_id_token",
                "Sign-in could not be completed",
                "The identity provider's answer failed verification, so no session was \
                 created."
                    .into(),
            ),
            Self::InvalidStepUp => (
                StatusCode::BAD_REQUEST,
                "invalid_step_up",
                "Sign-in could not be started",
                "The sign-in asked for a maximum authentication age or level that is not valid."
                    .into(),
            ),
            Self::StepUpNotMet(why) => (
                StatusCode::FORBIDDEN,
                "step_up_not_met",
                "Your identity could not be confirmed",
                format!("{why} Your session is as it was before."),
            ),
            Self::StaleSignIn => (
                StatusCode::FORBIDDEN,
                "step_up_not_met",
                "Your identity could not be confirmed",
                "The identity provider did not ask you to sign in again, so this action \
                 still needs a recent sign-in. Your session is as it was before."
                    .into(),
            ),
            Self::StepUpOtherUser => (
                StatusCode::FORBIDDEN,
                "step_up_other_user",
                "Signed in as someone else",
                "You confirmed your identity as a different user than the one signed in \
                 here, so nothing changed: you are still signed in as before."
                    .into(),
            ),
            Self::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "session_store_unavailable",
                "Sessions are unavailable",
                "The session store cannot be reached; no session was created.".into(),
            ),
        }
    }

    pub fn reason(&self) -> &'static str {
        self.parts().1
    }

    /// The error page, with a "Try again" link that starts a fresh login.
    pub fn page(&self, return_to: &ReturnTo) -> Response {
        let (status, reason, title, message) = self.parts();
        let inner = format!(
            r#"<h1>{title}</h1><p class="lead">{message}</p><p class="reason">Reason: <code>{reason}</code></p>
<p><a class="button primary" href="{retry}">Try again</a> <a class="button" href="/">Home</a></p>"#,
            title = escape(title),
            message = escape(&message),
            retry = escape(&login_href("/auth/login", None, return_to)),
        );
        standalone_page(
            status,
            title,
            &format!(r#"class="page error-page" data-reason="{reason}""#),
            &inner,
        )
    }
}

/// `/auth/login` or `/auth/signup` with `idp` (when given) and `return_to`,
/// URL-encoded (not yet HTML-escaped).
pub(crate) fn login_href(path: &str, idp: Option<&str>, return_to: &ReturnTo) -> String {
    let encode = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let idp = idp
        .map(|i| format!("idp={}&", encode(i)))
        .unwrap_or_default();
    format!("{path}?{idp}return_to={}", encode(return_to.as_str()))
}

/// A small self-contained HTML page for the auth flow (error, provider
/// chooser), never cached. `main_attrs` are the `<main>` element's attributes
/// and `inner` its content, both already-escaped HTML.
pub(crate) fn standalone_page(
    status: StatusCode,
    title: &str,
    main_attrs: &str,
    inner: &str,
) -> Response {
    let body = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Gatehouse</title><link rel="stylesheet" href="/pkg/gatehouse.css"></head>
<body><main {main_attrs}>
{inner}
</main></body></html>"#,
        title = escape(title),
    );
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// OAuth error codes are `%x20-21 / %x23-5B / %x5D-7E` (RFC 6749 §4.1.2.1); we
/// show only a conservative subset and a bounded length.
fn sanitize_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "an unspecified error".into()
    } else {
        clean
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idp_error_codes_cannot_inject_markup() {
        assert_eq!(sanitize_code("access_denied"), "access_denied");
        assert_eq!(sanitize_code("<script>x</script>"), "scriptxscript");
        assert_eq!(sanitize_code("\"'"), "an unspecified error");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
