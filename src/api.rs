//! What the browser may see: plain view types with no token fields, and the
//! server functions that return them. Token-holding types live only in
//! `crate::auth` (server-only), so the compiler keeps them off the wire.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One claim, rendered for a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRow {
    pub name: String,
    pub value: String,
}

impl ClaimRow {
    /// Claims as rows, sorted by name. Strings are shown as they are, everything
    /// else as compact JSON.
    pub fn rows(claims: &serde_json::Map<String, serde_json::Value>) -> Vec<ClaimRow> {
        let mut rows: Vec<ClaimRow> = claims
            .iter()
            .map(|(name, value)| ClaimRow {
                name: name.clone(),
                value: match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }
}

/// How one claim compares between the ID token and a fresh userinfo response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimDiff {
    pub name: String,
    pub id_token: Option<String>,
    pub userinfo: Option<String>,
}

impl ClaimDiff {
    /// The union of both claim sets, sorted by name.
    pub fn compare(id_token: &[ClaimRow], userinfo: &[ClaimRow]) -> Vec<ClaimDiff> {
        let mut names: Vec<&str> = id_token
            .iter()
            .chain(userinfo)
            .map(|r| r.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let find = |rows: &[ClaimRow], name: &str| {
            rows.iter()
                .find(|r| r.name == name)
                .map(|r| r.value.clone())
        };
        names
            .into_iter()
            .map(|name| ClaimDiff {
                name: name.to_string(),
                id_token: find(id_token, name),
                userinfo: find(userinfo, name),
            })
            .collect()
    }

    pub fn status(&self) -> &'static str {
        match (&self.id_token, &self.userinfo) {
            (Some(a), Some(b)) if a == b => "same",
            (Some(_), Some(_)) => "differs",
            (Some(_), None) => "ID token only",
            (None, Some(_)) => "userinfo only",
            (None, None) => "",
        }
    }
}

/// Session deadlines, as Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTimes {
    pub created_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    /// The idle timeout in seconds (for the "about to expire" warning).
    pub idle_timeout: i64,
    /// When the access token held server-side expires (if the IdP said).
    pub access_token_expires_at: Option<i64>,
}

/// The signed-in user as the browser sees it (`GET /auth/user` and the UI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub sub: String,
    pub name: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub picture: Option<String>,
    pub roles: Vec<String>,
    pub session: SessionTimes,
    /// The verified ID token's claims, for display (`getIdTokenClaims`).
    pub id_token_claims: Vec<ClaimRow>,
}

impl UserView {
    /// Up to two initials for the avatar fallback.
    pub fn initials(&self) -> String {
        self.name
            .split_whitespace()
            .filter_map(|w| w.chars().next())
            .take(2)
            .flat_map(char::to_uppercase)
            .collect()
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// One of the user's sessions, as `/sessions` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// A random name for the session (not its id, which is a credential).
    pub handle: String,
    pub created_at: i64,
    pub last_active: i64,
    pub browser: String,
    pub ip: Option<String>,
    /// The session this request rides on.
    pub current: bool,
}

/// One note of the `/api/notes` resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: i64,
    /// The owner's `sub` (a user's, or a machine client's).
    pub owner: String,
    pub owner_name: String,
    pub text: String,
    pub created_at: i64,
}

/// A user who has signed in, as `/admin` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenUser {
    pub sub: String,
    pub name: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub last_login: i64,
    /// Their active sessions (`current` marks the admin's own).
    pub sessions: Vec<SessionSummary>,
}

/// Why a guarded server function refused, sent as JSON with the matching
/// status (401, 403, 503, 500): `{"error":"forbidden","needed":"admin"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum AppError {
    /// No session (401).
    Unauthenticated,
    /// Signed in, but without the role this needs (403).
    Forbidden { needed: String },
    /// A dependency (session store, database, IdP) is down (503).
    Unavailable { message: String },
    /// Anything else, including transport errors on the way (500).
    Failed { message: String },
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unauthenticated => f.write_str("You are not signed in."),
            Self::Forbidden { needed } => write!(f, "This needs the role “{needed}”."),
            Self::Unavailable { message } | Self::Failed { message } => f.write_str(message),
        }
    }
}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        Self::Failed {
            message: value.to_string(),
        }
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Sets this error's status on the server function's response.
    pub fn respond(self) -> Self {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(self.status());
        }
        self
    }
}

/// `/admin`: every user seen, with roles and active sessions. Admins only.
#[server(client = CsrfClient)]
pub async fn admin_overview() -> Result<Vec<SeenUser>, AppError> {
    use crate::auth::authz::{server_fn_role, Admin};
    let (state, admin) = server_fn_role::<Admin>().await?;
    crate::auth::admin::overview(&state, &admin)
        .await
        .map_err(AppError::respond)
}

/// Ends every session of user `sub` (on every instance); how many ended. Admins only.
#[server(client = CsrfClient)]
pub async fn admin_end_user_sessions(sub: String) -> Result<usize, AppError> {
    use crate::auth::authz::{server_fn_role, Admin};
    let (state, admin) = server_fn_role::<Admin>().await?;
    crate::auth::admin::end_sessions_of(&state, &admin, &sub)
        .await
        .map_err(AppError::respond)
}

/// The signed-in user's sessions, newest first; `None` when anonymous.
#[server(client = CsrfClient)]
pub async fn my_sessions() -> Result<Option<Vec<SessionSummary>>, ServerFnError> {
    use crate::auth::{session::AuthSession, sessions};
    let session: AuthSession = leptos_axum::extract().await?;
    let state = expect_context::<crate::server::state::AppState>();
    sessions::list(&state, &session)
        .await
        .map_err(ServerFnError::new)
}

/// Ends one of the signed-in user's sessions (by handle); how many ended.
#[server(client = CsrfClient)]
pub async fn end_session(handle: String) -> Result<usize, ServerFnError> {
    use crate::auth::{session::AuthSession, sessions};
    let session: AuthSession = leptos_axum::extract().await?;
    let state = expect_context::<crate::server::state::AppState>();
    signed_in_count(sessions::end(&state, &session, sessions::Which::Handle(&handle)).await)
}

/// Ends every session of the signed-in user except this one; how many ended.
#[server(client = CsrfClient)]
pub async fn end_other_sessions() -> Result<usize, ServerFnError> {
    use crate::auth::{session::AuthSession, sessions};
    let session: AuthSession = leptos_axum::extract().await?;
    let state = expect_context::<crate::server::state::AppState>();
    signed_in_count(sessions::end(&state, &session, sessions::Which::AllOthers).await)
}

/// Anonymous callers get 401, store failures an error.
#[cfg(feature = "ssr")]
fn signed_in_count(
    result: Result<Option<usize>, crate::auth::session::SessionError>,
) -> Result<usize, ServerFnError> {
    match result {
        Ok(Some(n)) => Ok(n),
        Ok(None) => {
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(axum::http::StatusCode::UNAUTHORIZED);
            }
            Err(ServerFnError::new("not signed in"))
        }
        Err(e) => Err(ServerFnError::new(e)),
    }
}

/// "Stay signed in": counts as activity (extends the idle deadline) and
/// returns the session's deadlines; `None` when the session has ended.
#[server(client = CsrfClient)]
pub async fn stay_signed_in() -> Result<Option<SessionTimes>, ServerFnError> {
    use crate::auth::session::AuthSession;
    let session: AuthSession = leptos_axum::extract().await?;
    let state = expect_context::<crate::server::state::AppState>();
    Ok(session.user_view(&state).await.map(|user| user.session))
}

/// The user of this request's session, or `None` when anonymous.
#[server(client = CsrfClient)]
pub async fn current_user() -> Result<Option<UserView>, ServerFnError> {
    use crate::auth::session::AuthSession;
    let session: AuthSession = leptos_axum::extract().await?;
    let state = expect_context::<crate::server::state::AppState>();
    Ok(session.user_view(&state).await)
}

/// The server-function client: the browser's `fetch` (gloo-net, via server_fn's
/// `BrowserClient`) with the anti-forgery header `X-CSRF: 1` on every call. A
/// custom header cannot be sent cross-origin without a CORS preflight, which the
/// BFF never grants, so a request carrying it came from our own pages.
pub struct CsrfClient;

mod browser_client {
    use super::CsrfClient;
    use leptos::server_fn::{
        client::{browser::BrowserClient, Client},
        error::FromServerFnError,
        request::browser::BrowserRequest,
        response::browser::BrowserResponse,
    };
    use std::future::Future;

    // Leptos compiles server_fn's browser client on every target; on the server
    // this impl only satisfies the macro (server functions run in-process there).
    impl<E, IS, OS> Client<E, IS, OS> for CsrfClient
    where
        E: FromServerFnError,
        IS: FromServerFnError,
        OS: FromServerFnError,
    {
        type Request = BrowserRequest;
        type Response = BrowserResponse;

        fn send(req: Self::Request) -> impl Future<Output = Result<Self::Response, E>> + Send {
            req.headers().append("X-CSRF", "1");
            <BrowserClient as Client<E, IS, OS>>::send(req)
        }

        #[allow(clippy::type_complexity)]
        fn open_websocket(
            path: &str,
        ) -> impl Future<
            Output = Result<
                (
                    impl futures::Stream<Item = Result<bytes::Bytes, bytes::Bytes>> + Send + 'static,
                    impl futures::Sink<bytes::Bytes> + Send + 'static,
                ),
                E,
            >,
        > + Send {
            <BrowserClient as Client<E, IS, OS>>::open_websocket(path)
        }

        fn spawn(future: impl Future<Output = ()> + Send + 'static) {
            <BrowserClient as Client<E, IS, OS>>::spawn(future)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_are_sorted_and_readable() {
        let claims = json!({"sub": "1", "email_verified": true, "aud": ["x"]});
        let rows = ClaimRow::rows(claims.as_object().unwrap());
        let shown: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            shown,
            [("aud", "[\"x\"]"), ("email_verified", "true"), ("sub", "1")]
        );
    }

    #[test]
    fn claim_sets_compare_by_name() {
        let row = |n: &str, v: &str| ClaimRow {
            name: n.into(),
            value: v.into(),
        };
        let diff = ClaimDiff::compare(
            &[row("sub", "1"), row("name", "A"), row("nonce", "n")],
            &[row("sub", "1"), row("name", "B"), row("locale", "en")],
        );
        let shown: Vec<(&str, &str)> = diff.iter().map(|d| (d.name.as_str(), d.status())).collect();
        assert_eq!(
            shown,
            [
                ("locale", "userinfo only"),
                ("name", "differs"),
                ("nonce", "ID token only"),
                ("sub", "same")
            ]
        );
    }

    #[test]
    fn initials_come_from_the_name() {
        let user = UserView {
            sub: "s".into(),
            name: "alice liddell smith".into(),
            preferred_username: None,
            email: None,
            email_verified: None,
            picture: None,
            roles: vec!["admin".into()],
            session: SessionTimes {
                created_at: 0,
                idle_expires_at: 0,
                absolute_expires_at: 0,
                idle_timeout: 0,
                access_token_expires_at: None,
            },
            id_token_claims: vec![],
        };
        assert_eq!(user.initials(), "AL");
        assert!(user.has_role("admin") && !user.has_role("user"));
    }
}
