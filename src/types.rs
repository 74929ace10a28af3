//! What the browser may see: plain view types with no token fields, shared
//! by the server and the browser. Token-holding types live only in
//! `crate::auth` (server-only), so the compiler keeps them off the wire; the
//! server functions that return these types sit beside the pages and
//! components that call them.

use serde::{Deserialize, Serialize};

/// The role that opens `/admin`, everyone's notes and ending anyone's
/// sessions: named once, for the UI and the server's `RequireRole<Admin>`.
pub const ADMIN_ROLE: &str = "admin";

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

/// Why a server function refused, sent as JSON with the matching status
/// (401, 403, 503, 500): `{"error":"forbidden","needed":"admin"}`. The codes
/// are the JSON API's for the same meaning (`unauthenticated`,
/// `session_store_unavailable`, …); on the server, `?` on the API's error
/// type converts to this and sets the status.
///
/// One convention for "not signed in": a server function that needs a user
/// answers `Err(AppError::Unauthenticated)` with 401, never `Ok(None)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum AppError {
    /// No session, or it has ended (401).
    Unauthenticated,
    /// Signed in, but without the role this needs (403).
    Forbidden { needed: String },
    /// The session store cannot be reached (503).
    SessionStoreUnavailable,
    /// The identity provider cannot be reached; the session stays (503).
    IdpUnreachable,
    /// The app's database cannot be reached (503).
    DatabaseUnavailable,
    /// Anything else, including transport errors on the way (500, or the
    /// status of the server-side error it came from).
    Failed { message: String },
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unauthenticated => f.write_str("You are not signed in."),
            Self::Forbidden { needed } => write!(f, "This needs the role “{needed}”."),
            Self::SessionStoreUnavailable => {
                f.write_str("The session store cannot be reached; try again in a moment.")
            }
            Self::IdpUnreachable => f.write_str(
                "The identity provider cannot be reached right now; try again in a moment.",
            ),
            Self::DatabaseUnavailable => f.write_str("The database cannot be reached."),
            Self::Failed { message } => f.write_str(message),
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
