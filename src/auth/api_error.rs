//! The one error type of every JSON answer that is not a success: each
//! variant is one distinct failure with one stable machine-readable `code`,
//! one HTTP status, a human message and the headers its standard asks for
//! (`WWW-Authenticate` for RFC 6750, `Allow` for a 405, `Retry-After` for a
//! 429). The body is always `{"error": code, "message": message}`, never
//! cached, and never echoes what the request sent.
//!
//! Server functions answer [`AppError`] (the wire type the browser decodes);
//! `?` on an `ApiError` converts it and sets the server function's HTTP status
//! to the `ApiError`'s, so a failure has the same status and, where the two
//! share a meaning, the same code on both paths.

use axum::{
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::session::SessionError;
use crate::types::AppError;

/// The realm of every bearer challenge (RFC 6750 §3).
const REALM: &str = "gatehouse";

/// How long a client should wait before opening another `/auth/events` stream.
const STREAMS_RETRY_AFTER_SECS: &str = "30";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// 401 `unauthenticated`: no session (cookie endpoints such as `/auth/user`).
    NotSignedIn,
    /// 401 `unauthenticated` on a resource that also takes bearer tokens
    /// (`/api/*`): neither a session nor a token. RFC 6750 §3.1: a request
    /// without credentials gets a bare challenge, with no error code.
    NoCredentials,
    /// 401 `session_ended`: the session ended while serving this request
    /// (the IdP refused the refresh, or an upstream refused a fresh token).
    SessionEnded,
    /// 401 `access_token_rejected`: the IdP's userinfo endpoint no longer
    /// accepts the session's access token.
    AccessTokenRejected,
    /// 401 `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"`
    /// (RFC 6750 §3.1): a bearer token that is malformed, expired or not ours.
    InvalidToken { description: &'static str },
    /// 401 `invalid_dpop_proof` (RFC 9449 §7.1): a DPoP-bound token came
    /// without a valid proof of its key (or with one seen before).
    InvalidDpopProof { description: &'static str },
    /// 403 `forbidden`: signed in, without the role this needs.
    Forbidden { role: &'static str },
    /// 401 `insufficient_user_authentication` with `WWW-Authenticate: Bearer
    /// error="insufficient_user_authentication"` and the `max_age` and/or
    /// `acr_values` a new sign-in must meet (RFC 9470 §3): the session's
    /// sign-in is too old, or of too weak a class, for this.
    StepUpRequired {
        max_age: Option<u64>,
        acr_values: Option<String>,
    },
    /// 403 `insufficient_scope` with `WWW-Authenticate: Bearer
    /// error="insufficient_scope"` (RFC 6750 §3.1).
    InsufficientScope { scope: &'static str },
    /// 403 `organization_mismatch`: the credentials are for another
    /// organization than the one the request names.
    OrganizationMismatch,
    /// 403 `csrf`: the anti-forgery check failed, and why.
    Csrf(&'static str),
    /// 400 `invalid_request`: the request is malformed; the message says how.
    InvalidRequest(&'static str),
    /// 400 `invalid_path`: a relayed path leaves the remote API's prefix.
    InvalidPath,
    /// 422 `invalid_note`: empty, or longer than `max_chars`.
    InvalidNote { max_chars: usize },
    /// 404 `not_found`; the message says what (someone else's resource looks
    /// exactly like a missing one).
    NotFound(&'static str),
    /// 405 `method_not_allowed`, with `Allow` listing the methods that are.
    MethodNotAllowed { allow: Vec<Method> },
    /// 413 `payload_too_large`: request bodies are limited to `limit` bytes.
    PayloadTooLarge { limit: usize },
    /// 429 `too_many_streams` with `Retry-After`: too many open `/auth/events`.
    TooManyStreams,
    /// 503 `session_store_unavailable`: the session store cannot be reached.
    SessionStoreUnavailable,
    /// 503 `idp_unreachable`: the identity provider (or its keys) cannot be
    /// reached. Never a logout: the session stays.
    IdpUnreachable,
    /// 503 `database_unavailable`: the app's database cannot be reached.
    DatabaseUnavailable,
    /// 502 `userinfo_invalid`: the IdP's userinfo answer failed verification.
    UserinfoInvalid,
    /// 502 `upstream_unreachable`: a relayed remote API cannot be reached.
    UpstreamUnreachable,
    /// 502 `upstream_token_unavailable`: no access token this remote API
    /// accepts could be had for its resource (RFC 8707): the IdP would not
    /// issue one, the session has no refresh token to ask with, or the API
    /// refused a fresh one. The session stays.
    UpstreamTokenUnavailable,
}

impl ApiError {
    /// Why a request body could not be read within `limit` bytes: over the
    /// limit (413, as for a body that declares its length), or cut off or
    /// malformed on the wire (400: the client's upload failed, it is not too
    /// large, and retrying it smaller would not help).
    pub fn unreadable_body(e: &axum::Error, limit: usize) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(error) = source {
            if error.is::<http_body_util::LengthLimitError>() {
                return Self::PayloadTooLarge { limit };
            }
            source = error.source();
        }
        Self::InvalidRequest("the request body could not be read")
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotSignedIn
            | Self::NoCredentials
            | Self::SessionEnded
            | Self::AccessTokenRejected
            | Self::InvalidToken { .. }
            | Self::InvalidDpopProof { .. }
            | Self::StepUpRequired { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. }
            | Self::InsufficientScope { .. }
            | Self::OrganizationMismatch
            | Self::Csrf(_) => StatusCode::FORBIDDEN,
            Self::InvalidRequest(_) | Self::InvalidPath => StatusCode::BAD_REQUEST,
            Self::InvalidNote { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            Self::SessionStoreUnavailable | Self::IdpUnreachable | Self::DatabaseUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UserinfoInvalid | Self::UpstreamUnreachable | Self::UpstreamTokenUnavailable => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The stable machine-readable reason: the body's `error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotSignedIn | Self::NoCredentials => "unauthenticated",
            Self::SessionEnded => "session_ended",
            Self::AccessTokenRejected => "access_token_rejected",
            Self::InvalidToken { .. } => "invalid_token",
            Self::InvalidDpopProof { .. } => "invalid_dpop_proof",
            Self::Forbidden { .. } => "forbidden",
            Self::StepUpRequired { .. } => "insufficient_user_authentication",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::OrganizationMismatch => "organization_mismatch",
            Self::Csrf(_) => "csrf",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidPath => "invalid_path",
            Self::InvalidNote { .. } => "invalid_note",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::TooManyStreams => "too_many_streams",
            Self::SessionStoreUnavailable => "session_store_unavailable",
            Self::IdpUnreachable => "idp_unreachable",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::UserinfoInvalid => "userinfo_invalid",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamTokenUnavailable => "upstream_token_unavailable",
        }
    }

    /// What a person reads: the body's `message`.
    pub fn message(&self) -> String {
        match self {
            Self::NotSignedIn => "Not signed in, or the session has ended.".into(),
            Self::NoCredentials => {
                "Not signed in, and no access token was sent (Authorization: Bearer …).".into()
            }
            Self::SessionEnded => "Your session has ended — sign in again.".into(),
            Self::AccessTokenRejected => {
                "The identity provider no longer accepts this session's access token.".into()
            }
            Self::InvalidToken { description } | Self::InvalidDpopProof { description } => {
                (*description).into()
            }
            Self::InsufficientScope { scope } => format!("This needs the scope {scope:?}."),
            Self::OrganizationMismatch => {
                "The credentials are not for the organization this request names.".into()
            }
            Self::Csrf(why) => (*why).into(),
            Self::InvalidRequest(message) | Self::NotFound(message) => (*message).into(),
            Self::InvalidPath => "The path leaves the remote API's prefix.".into(),
            Self::InvalidNote { max_chars } => format!("A note is 1 to {max_chars} characters."),
            Self::MethodNotAllowed { .. } => {
                "This method is not allowed here; Allow lists the ones that are.".into()
            }
            Self::PayloadTooLarge { limit } => {
                format!("Request bodies are limited to {} KiB.", limit / 1024)
            }
            Self::TooManyStreams => "Too many open session watchers; close some tabs.".into(),
            // The meanings server functions share: one wording, the browser's.
            Self::Forbidden { .. }
            | Self::StepUpRequired { .. }
            | Self::SessionStoreUnavailable
            | Self::IdpUnreachable
            | Self::DatabaseUnavailable => self.app_error().to_string(),
            Self::UserinfoInvalid => {
                "The identity provider's userinfo answer failed verification.".into()
            }
            Self::UpstreamUnreachable => "The remote API cannot be reached.".into(),
            Self::UpstreamTokenUnavailable => {
                "No access token this remote API accepts could be obtained.".into()
            }
        }
    }

    /// The headers this failure's standard asks for, besides `Cache-Control`.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let challenge = |params: String| {
            HeaderValue::from_str(&format!("Bearer {params}"))
                .map(|v| vec![(header::WWW_AUTHENTICATE, v)])
                .unwrap_or_default()
        };
        match self {
            Self::NoCredentials => challenge(format!("realm=\"{REALM}\"")),
            Self::InvalidToken { description } => challenge(format!(
                "realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                rfc6750_text(description)
            )),
            Self::InvalidDpopProof { description } => HeaderValue::from_str(&format!(
                "DPoP realm=\"{REALM}\", error=\"invalid_dpop_proof\", error_description=\"{}\", algs=\"{}\"",
                rfc6750_text(description),
                super::dpop::ACCEPTED_ALGS
            ))
            .map(|v| vec![(header::WWW_AUTHENTICATE, v)])
            .unwrap_or_default(),
            Self::InsufficientScope { scope } => challenge(format!(
                "realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                rfc6750_text(scope)
            )),
            Self::StepUpRequired {
                max_age,
                acr_values,
            } => {
                let mut params = format!(
                    "realm=\"{REALM}\", error=\"insufficient_user_authentication\", \
                     error_description=\"A more recent sign-in is required\""
                );
                if let Some(max_age) = max_age {
                    params.push_str(&format!(", max_age=\"{max_age}\""));
                }
                if let Some(acr_values) = acr_values {
                    params.push_str(&format!(", acr_values=\"{}\"", rfc6750_text(acr_values)));
                }
                challenge(params)
            }
            Self::MethodNotAllowed { allow } => {
                let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
                HeaderValue::from_str(&list.join(", "))
                    .map(|v| vec![(header::ALLOW, v)])
                    .unwrap_or_default()
            }
            Self::TooManyStreams => vec![(
                header::RETRY_AFTER,
                HeaderValue::from_static(STREAMS_RETRY_AFTER_SECS),
            )],
            _ => Vec::new(),
        }
    }

    /// This failure on a resource that also takes bearer tokens (`/api/*`):
    /// RFC 6750 §3 asks every 401 there to carry a `WWW-Authenticate`
    /// challenge. Exhaustive on purpose: a new variant needs a decision here.
    pub fn at_bearer_resource(self) -> Self {
        match self {
            Self::NotSignedIn | Self::SessionEnded | Self::AccessTokenRejected => {
                Self::NoCredentials
            }
            Self::NoCredentials
            | Self::InvalidToken { .. }
            | Self::InvalidDpopProof { .. }
            | Self::Forbidden { .. }
            | Self::StepUpRequired { .. }
            | Self::InsufficientScope { .. }
            | Self::OrganizationMismatch
            | Self::Csrf(_)
            | Self::InvalidRequest(_)
            | Self::InvalidPath
            | Self::InvalidNote { .. }
            | Self::NotFound(_)
            | Self::MethodNotAllowed { .. }
            | Self::PayloadTooLarge { .. }
            | Self::TooManyStreams
            | Self::SessionStoreUnavailable
            | Self::IdpUnreachable
            | Self::DatabaseUnavailable
            | Self::UserinfoInvalid
            | Self::UpstreamUnreachable
            | Self::UpstreamTokenUnavailable => self,
        }
    }

    /// The server functions' form of this failure (no side effect; the
    /// `From` conversion also sets the HTTP status).
    fn app_error(&self) -> AppError {
        match self {
            Self::NotSignedIn | Self::NoCredentials | Self::SessionEnded => {
                AppError::Unauthenticated
            }
            Self::Forbidden { role } => AppError::Forbidden {
                needed: (*role).into(),
            },
            Self::StepUpRequired {
                max_age,
                acr_values,
            } => AppError::StepUpRequired {
                max_age: *max_age,
                acr_values: acr_values.clone(),
            },
            Self::SessionStoreUnavailable => AppError::SessionStoreUnavailable,
            Self::IdpUnreachable => AppError::IdpUnreachable,
            Self::DatabaseUnavailable => AppError::DatabaseUnavailable,
            other => AppError::Failed {
                message: other.message(),
            },
        }
    }
}

/// Only what RFC 6750 §3 allows inside a quoted `error_description` or
/// `scope` (`%x20-21 / %x23-5B / %x5D-7E`: printable ASCII without `"` and `\`).
fn rfc6750_text(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": self.code(), "message": self.message() }));
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in self.headers() {
            headers.insert(name, value);
        }
        response
    }
}

/// A session that cannot be read: the store is down (logged here, never
/// echoed), or the IdP cannot confirm an expired token's claims.
impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::IdpUnavailable => Self::IdpUnreachable,
            SessionError::Store(e) => {
                tracing::error!(error = %e, "session store unavailable");
                Self::SessionStoreUnavailable
            }
        }
    }
}

/// For `?` in server functions: the server function's response gets this
/// error's HTTP status, and its body the matching [`AppError`] (the same code
/// where both have one: `unauthenticated`, `forbidden`,
/// `session_store_unavailable`, `idp_unreachable`, `database_unavailable`;
/// `failed` with this error's message otherwise).
impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(e.status());
            // The same challenge as on the JSON API (RFC 9470 §3 for a step-up).
            for (name, value) in e.headers() {
                response.insert_header(name, value);
            }
        }
        e.app_error()
    }
}

/// The HTTP status that goes with a server function's [`AppError`].
pub fn status_of(error: &AppError) -> StatusCode {
    match error {
        AppError::Unauthenticated | AppError::StepUpRequired { .. } => StatusCode::UNAUTHORIZED,
        AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
        AppError::SessionStoreUnavailable
        | AppError::IdpUnreachable
        | AppError::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Sets `error`'s status on the server function's response, and returns it
/// (for an `AppError` made directly rather than converted from an `ApiError`).
pub fn respond(error: AppError) -> AppError {
    if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(status_of(&error));
    }
    error
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// One of each variant. `ordinal` below does not compile until a new
    /// variant is named there, and the first test fails until it is here too.
    fn every_variant() -> Vec<ApiError> {
        vec![
            ApiError::NotSignedIn,
            ApiError::NoCredentials,
            ApiError::SessionEnded,
            ApiError::AccessTokenRejected,
            ApiError::InvalidToken {
                description: "the access token is invalid or expired",
            },
            ApiError::Forbidden { role: "admin" },
            ApiError::InsufficientScope {
                scope: "notes:write",
            },
            ApiError::OrganizationMismatch,
            ApiError::Csrf("cross-origin request"),
            ApiError::InvalidRequest("Send JSON."),
            ApiError::InvalidPath,
            ApiError::InvalidNote { max_chars: 2000 },
            ApiError::NotFound("No such note of yours."),
            ApiError::MethodNotAllowed {
                allow: vec![Method::GET, Method::POST],
            },
            ApiError::PayloadTooLarge { limit: 64 * 1024 },
            ApiError::TooManyStreams,
            ApiError::SessionStoreUnavailable,
            ApiError::IdpUnreachable,
            ApiError::DatabaseUnavailable,
            ApiError::UserinfoInvalid,
            ApiError::UpstreamUnreachable,
            ApiError::UpstreamTokenUnavailable,
            ApiError::InvalidDpopProof {
                description: "the DPoP proof's htu is not this request's URL",
            },
            ApiError::StepUpRequired {
                max_age: Some(600),
                acr_values: Some("urn:mfa \"x\"".into()),
            },
        ]
    }

    fn ordinal(e: &ApiError) -> usize {
        match e {
            ApiError::NotSignedIn => 0,
            ApiError::NoCredentials => 1,
            ApiError::SessionEnded => 2,
            ApiError::AccessTokenRejected => 3,
            ApiError::InvalidToken { .. } => 4,
            ApiError::Forbidden { .. } => 5,
            ApiError::InsufficientScope { .. } => 6,
            ApiError::OrganizationMismatch => 7,
            ApiError::Csrf(_) => 8,
            ApiError::InvalidRequest(_) => 9,
            ApiError::InvalidPath => 10,
            ApiError::InvalidNote { .. } => 11,
            ApiError::NotFound(_) => 12,
            ApiError::MethodNotAllowed { .. } => 13,
            ApiError::PayloadTooLarge { .. } => 14,
            ApiError::TooManyStreams => 15,
            ApiError::SessionStoreUnavailable => 16,
            ApiError::IdpUnreachable => 17,
            ApiError::DatabaseUnavailable => 18,
            ApiError::UserinfoInvalid => 19,
            ApiError::UpstreamUnreachable => 20,
            ApiError::StepUpRequired { .. } => 21,
            ApiError::UpstreamTokenUnavailable => 22,
            ApiError::InvalidDpopProof { .. } => 23,
        }
    }
    const VARIANTS: usize = 24;

    fn header<'a>(response: &'a Response, name: &HeaderName) -> Option<&'a str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn the_list_names_every_variant_once() {
        let mut seen: Vec<usize> = every_variant().iter().map(ordinal).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..VARIANTS).collect::<Vec<_>>());
    }

    /// A client may branch on `error` alone: one code never means two
    /// statuses, codes are snake_case, and the codes retired when the errors
    /// were unified (one per meaning) do not come back.
    #[test]
    fn a_code_has_one_status_and_one_spelling() {
        let mut status_of_code: HashMap<&str, StatusCode> = HashMap::new();
        for e in every_variant() {
            let code = e.code();
            assert!(
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code:?} is not snake_case"
            );
            if let Some(before) = status_of_code.insert(code, e.status()) {
                assert_eq!(before, e.status(), "{code} is used with two statuses");
            }
            for retired in ["idp_unavailable", "temporarily_unavailable", "unavailable"] {
                assert_ne!(code, retired, "{e:?}");
            }
            assert!(!e.message().trim().is_empty(), "{e:?} has no message");
        }
        // Each dependency being down is one code, whichever route reports it.
        let down: Vec<&str> = every_variant()
            .iter()
            .filter(|e| e.status() == StatusCode::SERVICE_UNAVAILABLE)
            .map(ApiError::code)
            .collect();
        assert_eq!(
            down,
            [
                "session_store_unavailable",
                "idp_unreachable",
                "database_unavailable"
            ]
        );
    }

    #[tokio::test]
    async fn every_response_is_the_json_shape_and_never_cached() {
        for e in every_variant() {
            let response = e.clone().into_response();
            assert_eq!(response.status(), e.status(), "{e:?}");
            assert_eq!(
                header(&response, &header::CACHE_CONTROL),
                Some("no-store"),
                "{e:?}"
            );
            let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(
                body,
                json!({"error": e.code(), "message": e.message()}),
                "{e:?}"
            );
        }
    }

    /// RFC 6750 §3 on `/api/*`: every 401 carries a `Bearer` challenge (a
    /// `DPoP` one for a refused proof);
    /// `invalid_token` is a 401 and `insufficient_scope` a 403, each named in
    /// its challenge; a request without credentials gets no error code.
    #[test]
    fn every_401_on_a_bearer_resource_carries_a_challenge() {
        for e in every_variant() {
            let e = e.at_bearer_resource();
            let response = e.clone().into_response();
            let challenge = header(&response, &header::WWW_AUTHENTICATE);
            if response.status() == StatusCode::UNAUTHORIZED {
                let challenge = challenge.unwrap_or_else(|| panic!("{e:?} has no challenge"));
                // A refused DPoP proof is answered in its own scheme
                // (RFC 9449 §7.1).
                let scheme = if e.code() == "invalid_dpop_proof" {
                    "DPoP"
                } else {
                    "Bearer"
                };
                assert!(
                    challenge.starts_with(&format!("{scheme} realm=\"gatehouse\"")),
                    "{challenge}"
                );
            }
            match e.code() {
                "invalid_token" => {
                    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
                }
                "insufficient_user_authentication" => {
                    // RFC 9470 §3: the challenge names what a new sign-in must meet.
                    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                    assert_eq!(
                        challenge.unwrap(),
                        "Bearer realm=\"gatehouse\", error=\"insufficient_user_authentication\", \
                         error_description=\"A more recent sign-in is required\", max_age=\"600\", \
                         acr_values=\"urn:mfa x\""
                    );
                }
                "insufficient_scope" => {
                    assert_eq!(response.status(), StatusCode::FORBIDDEN);
                    let challenge = challenge.unwrap();
                    assert!(challenge.contains("error=\"insufficient_scope\""));
                    assert!(challenge.contains("scope=\"notes:write\""), "{challenge}");
                }
                "unauthenticated" => assert_eq!(challenge, Some("Bearer realm=\"gatehouse\"")),
                _ => {}
            }
        }
        // Cookie endpoints (`/auth/user`) answer no bearer challenge.
        let cookie = ApiError::NotSignedIn.into_response();
        assert_eq!(header(&cookie, &header::WWW_AUTHENTICATE), None);
    }

    #[test]
    fn challenges_stay_well_formed_whatever_the_description() {
        let e = ApiError::InvalidToken {
            description: "a \"quoted\" \\ wörd",
        };
        let response = e.into_response();
        assert_eq!(
            header(&response, &header::WWW_AUTHENTICATE),
            Some(
                "Bearer realm=\"gatehouse\", error=\"invalid_token\", \
                 error_description=\"a quoted  wrd\""
            )
        );
    }

    #[test]
    fn allow_and_retry_after_are_kept() {
        let response = ApiError::MethodNotAllowed {
            allow: vec![Method::GET, Method::POST],
        }
        .into_response();
        assert_eq!(header(&response, &header::ALLOW), Some("GET, POST"));
        let response = ApiError::TooManyStreams.into_response();
        assert_eq!(header(&response, &header::RETRY_AFTER), Some("30"));
    }

    /// A server function answers the same status as the JSON route would,
    /// and the same code wherever the server functions' type has one.
    #[test]
    fn server_functions_get_the_same_status_and_code() {
        for e in every_variant() {
            let app = e.app_error();
            let wire = serde_json::to_value(&app).unwrap();
            let code = wire["error"].as_str().unwrap().to_string();
            if matches!(app, AppError::Failed { .. }) {
                // Status comes from the `From` conversion; the message says why.
                assert_eq!(wire["message"], e.message(), "{e:?}");
                continue;
            }
            assert_eq!(status_of(&app), e.status(), "{e:?}");
            // The one merge: an ended session is "not signed in" to a server function.
            if e != ApiError::SessionEnded {
                assert_eq!(code, e.code(), "{e:?}");
            }
        }
    }

    /// Read as the relay and server functions read a body (`to_bytes` within
    /// a limit): over the limit is a 413, whether the body declared its
    /// length or was streamed; a body that breaks off on the wire is a 400,
    /// not "too large".
    #[tokio::test]
    async fn an_unreadable_body_is_too_large_only_when_it_is() {
        use axum::body::{to_bytes, Body, Bytes};
        let declared = to_bytes(Body::from(vec![b'x'; 65]), 64).await.unwrap_err();
        let streamed_chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..5).map(|_| Ok(Bytes::from(vec![b'y'; 16]))).collect();
        let streamed = to_bytes(
            Body::from_stream(futures::stream::iter(streamed_chunks)),
            64,
        )
        .await
        .unwrap_err();
        for (what, e) in [("declared", declared), ("streamed", streamed)] {
            assert_eq!(
                ApiError::unreadable_body(&e, 64),
                ApiError::PayloadTooLarge { limit: 64 },
                "{what}"
            );
        }
        let cut_off_chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{\"q\":")),
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before message completed",
            )),
        ];
        let cut_off = to_bytes(Body::from_stream(futures::stream::iter(cut_off_chunks)), 64)
            .await
            .unwrap_err();
        let error = ApiError::unreadable_body(&cut_off, 64);
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.code(), "invalid_request");
    }
}
