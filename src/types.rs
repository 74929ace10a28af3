//! What the browser may see: plain view types with no token fields, shared
//! by the server and the browser. Token-holding types live only in
//! `crate::auth` (server-only), so the compiler keeps them off the wire; the
//! server functions that return these types sit beside the pages and
//! components that call them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// The signed-in user as the `current_user` server function answers it:
/// the view, and the view's JSON when the server made it once for the
/// record it came from (the session layer keeps it per record and idle
/// deadline, as for `GET /auth/user`), so answering writes that JSON as it
/// is instead of serializing the view again on every call. In the browser
/// it is only the view. Serializes exactly as [`UserView`] does (the JSON
/// is kept only from `serde_json`, the codec of server functions and of
/// the resources that carry it into the page).
#[derive(Clone, Debug)]
pub struct SignedInUser {
    view: Arc<UserView>,
    json: Option<Arc<RawValue>>,
}

impl SignedInUser {
    /// The view, with its JSON made now (once, by whoever keeps it).
    pub fn with_json(view: UserView) -> Self {
        let json = serde_json::value::to_raw_value(&view).expect("a user view always serializes");
        Self {
            view: Arc::new(view),
            json: Some(Arc::from(json)),
        }
    }

    /// The view's JSON when it was made on the server.
    pub fn json(&self) -> Option<&Arc<RawValue>> {
        self.json.as_ref()
    }

    /// The view, for components that take it by value.
    pub fn view(&self) -> UserView {
        UserView::clone(&self.view)
    }
}

impl From<UserView> for SignedInUser {
    fn from(view: UserView) -> Self {
        Self {
            view: Arc::new(view),
            json: None,
        }
    }
}

impl std::ops::Deref for SignedInUser {
    type Target = UserView;
    fn deref(&self) -> &UserView {
        &self.view
    }
}

impl Serialize for SignedInUser {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Some(json) => json.serialize(serializer),
            None => self.view.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for SignedInUser {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        UserView::deserialize(deserializer).map(Self::from)
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
    /// Signed in with the role, but too long ago or at too weak an
    /// authentication level for this (401, RFC 9470): sign in again with
    /// `max_age` (seconds) and/or `acr_values`, then retry. The same code as
    /// the JSON API's 401.
    #[serde(rename = "insufficient_user_authentication")]
    StepUpRequired {
        max_age: Option<u64>,
        acr_values: Option<String>,
    },
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
            Self::StepUpRequired { .. } => {
                f.write_str("This needs a recent sign-in: confirm it's you to continue.")
            }
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

/// A user for tests.
#[cfg(test)]
pub(crate) fn sample_view() -> UserView {
    UserView {
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
        let user = sample_view();
        assert_eq!(user.initials(), "AL");
        assert!(user.has_role("admin") && !user.has_role("user"));
    }

    /// The kept JSON is written as it is, and says exactly what the view
    /// says; the browser reads it back as the view.
    #[test]
    fn a_signed_in_user_serializes_as_its_view() {
        let mut view = sample_view();
        view.name = "Quote \" \u{1b} end".into();
        view.id_token_claims = vec![ClaimRow {
            name: "acr".into(),
            value: "1".into(),
        }];
        let plain = serde_json::to_string(&Some(&view)).unwrap();
        let kept = SignedInUser::with_json(view.clone());
        assert!(kept.json().is_some());
        assert_eq!(serde_json::to_string(&Some(&kept)).unwrap(), plain);
        let wrapped: Result<Option<SignedInUser>, ()> = Ok(Some(kept));
        let wire = serde_json::to_string(&wrapped).unwrap();
        assert_eq!(wire, format!("{{\"Ok\":{plain}}}"));
        let back: Result<Option<SignedInUser>, ()> = serde_json::from_str(&wire).unwrap();
        let back = back.unwrap().unwrap();
        assert!(back.json().is_none(), "the browser keeps the view only");
        assert_eq!(back.view(), view);
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&view).unwrap()
        );
    }
}
