//! What a signed-in session holds and how it sits in the session data: the
//! [`SessionRecord`] with its [`TokenSet`], one JSON string under
//! [`RECORD_KEY`] ([`encode_record`] / [`decode_record`]), and the owner the
//! store indexes it by ([`index_entry`]).

use std::{collections::HashMap, fmt};

use openidconnect::{AccessToken, RefreshToken};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::{auth::subject::SubjectKey, server::store::OwnerEntry};

/// Where a signed-in session keeps its [`SessionRecord`] in the session data.
pub const RECORD_KEY: &str = "gatehouse.user";

/// The raw ID token, kept only for `id_token_hint` at logout. Never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawIdToken(String);

impl RawIdToken {
    pub fn new(raw: String) -> Self {
        Self(raw)
    }
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RawIdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawIdToken([redacted])")
    }
}

/// Every token the IdP gave us. `Debug` is redacted by the openidconnect types.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    pub id_token: RawIdToken,
    #[serde(with = "time::serde::timestamp::option")]
    pub access_token_expires_at: Option<OffsetDateTime>,
    /// When this access token was obtained (caps the refresh leeway).
    #[serde(default, with = "time::serde::timestamp::option")]
    pub issued_at: Option<OffsetDateTime>,
    /// Access tokens for one API each (RFC 8707 resource indicators: the
    /// `aud=` of an `API_REMOTES` entry), got with the refresh token when the
    /// relay first needs them. Each goes only to its own API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceToken>,
    /// The IdP bound `access_token` to the session's DPoP key (its
    /// `token_type` was `DPoP`, RFC 9449 §5): it is presented with proofs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop: bool,
}

/// An access token the IdP issued for one resource (API) only.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ResourceToken {
    pub resource: String,
    pub access_token: AccessToken,
    #[serde(with = "time::serde::timestamp::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::timestamp")]
    pub issued_at: OffsetDateTime,
    /// Bound to the session's DPoP key, as [`TokenSet::dpop`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop: bool,
}

impl TokenSet {
    /// The same access, refresh and resource tokens (compared by value: a
    /// refresh replaces them, so this tells whether one happened since).
    pub fn same_as(&self, other: &TokenSet) -> bool {
        self.access_token.secret() == other.access_token.secret()
            && self.refresh_token.as_ref().map(RefreshToken::secret)
                == other.refresh_token.as_ref().map(RefreshToken::secret)
            && self.resources.len() == other.resources.len()
            && self
                .resources
                .iter()
                .zip(&other.resources)
                .all(|(a, b)| a.access_token.secret() == b.access_token.secret())
    }

    /// The access token held for `resource`, if any.
    pub fn for_resource(&self, resource: &str) -> Option<&ResourceToken> {
        self.resources.iter().find(|t| t.resource == resource)
    }
}

/// What a signed-in session holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The provider that signed this user in (`None`: the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    pub sub: String,
    /// The IdP's session id (`sid`), used by back-channel logout.
    pub sid: Option<String>,
    pub name: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub picture: Option<String>,
    pub roles: Vec<String>,
    /// The verified ID token claims, for display.
    pub id_token_claims: Map<String, Value>,
    pub tokens: TokenSet,
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
    /// Set once at login; activity never moves it.
    #[serde(with = "time::serde::timestamp")]
    pub absolute_expires_at: OffsetDateTime,
    /// A random name for this session that the browser may see (to end it
    /// from `/sessions`); the session id itself is a credential and never shown.
    #[serde(default)]
    pub handle: String,
    /// Where the login came from, for the session list.
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    /// When the user last authenticated at the IdP (the ID token's
    /// `auth_time`), on this app's clock: the token's own age (`iat` minus
    /// `auth_time`, both the IdP's clock) taken from the time we received
    /// it, so a skew between the two clocks cannot make a sign-in look
    /// fresher or older than the IdP says. Kept across refreshes (OIDC Core
    /// §12.2: a refreshed ID token's `auth_time` is the original one).
    #[serde(default, with = "time::serde::timestamp::option")]
    pub auth_time: Option<OffsetDateTime>,
    /// The authentication context class the IdP reports (`acr`).
    #[serde(default)]
    pub acr: Option<String>,
    /// With `OIDC_DPOP=1`: the key this session's tokens are bound to (made
    /// at sign-in, one per session; see `auth::dpop` for why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<crate::auth::dpop::DpopKey>,
}

impl SessionRecord {
    /// This user's key in the session index and in `/admin`'s user list.
    pub fn subject_key(&self) -> SubjectKey {
        SubjectKey::new(self.idp.as_deref(), &self.sub)
    }
}

/// How a record sits in the session data: as one JSON string, not a tree of
/// JSON values. The memory store clones the session data on every request and
/// tower-sessions deserializes the record from it; a string is one allocation
/// to clone and parses straight into the record, where a value tree is a
/// hundred allocations to clone, convert and drop (`make bench` measured the
/// difference: see the README's Performance section).
///
/// The string starts with a tag made fresh for this encoding (the 32 hex
/// digits of a random v4 UUID, 122 random bits), then the JSON. Two strings
/// with the same tag are the same encoding, so `DecodedRecords` knows a
/// request carries the bytes it already decoded by comparing 32 bytes
/// instead of reading 5 KiB it no longer has in cache (and keeps the tag,
/// not a second copy of the record). Strings from before the tag (plain
/// JSON, starting with `{`) still read, and are compared whole.
pub fn encode_record(record: &SessionRecord) -> Value {
    let mut tagged = Vec::with_capacity(TAG_LEN + 6 * 1024);
    tagged.extend_from_slice(
        uuid::Uuid::new_v4()
            .simple()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    serde_json::to_writer(&mut tagged, record).expect("a session record always serializes");
    Value::String(String::from_utf8(tagged).expect("hex and JSON are UTF-8"))
}

/// The length of an encoding's tag.
const TAG_LEN: usize = 32;

/// An encoded record's tag (`None` before tags were written) and its JSON.
pub fn split_tag(encoded: &str) -> (Option<&str>, &str) {
    // A JSON record starts with `{`; a tag never does, and is followed by one.
    if !encoded.starts_with('{') && encoded.as_bytes().get(TAG_LEN) == Some(&b'{') {
        let (tag, json) = encoded.split_at(TAG_LEN);
        return (Some(tag), json);
    }
    (None, encoded)
}

/// Reads a record written by [`encode_record`].
pub fn decode_record(value: &Value) -> Option<SessionRecord> {
    serde_json::from_str(split_tag(value.as_str()?).1).ok()
}

/// The signed-in record inside a stored session's data, if there is one.
pub fn record_from_data(data: &HashMap<String, Value>) -> Option<SessionRecord> {
    decode_record(data.get(RECORD_KEY)?)
}

/// What a list of a user's sessions (`/sessions`, `/admin`) shows of one:
/// the store keeps it beside the record, readable without the session's
/// cookie (no token, nothing that signs in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFacts {
    pub handle: String,
    pub created_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl SessionFacts {
    pub fn of(record: &SessionRecord) -> Self {
        Self {
            handle: record.handle.clone(),
            created_at: record.created_at.unix_timestamp(),
            user_agent: record.user_agent.clone(),
            ip: record.ip.clone(),
        }
    }
}

/// What the store indexes a signed-in session by, `(sub, sid)`, and lists it
/// with. `None` for a session that is not signed in (e.g. one holding only
/// pending logins).
pub fn index_entry(data: &HashMap<String, Value>) -> Option<OwnerEntry> {
    let record = record_from_data(data)?;
    let sid = record
        .sid
        .as_deref()
        .map(|sid| SubjectKey::new(record.idp.as_deref(), sid).into_string());
    Some(OwnerEntry {
        sub: record.subject_key().into_string(),
        sid,
        facts: serde_json::to_value(SessionFacts::of(&record)).ok()?,
    })
}

/// A small record for unit tests (alice, role `user`, IdP session `s1`).
#[cfg(test)]
pub(crate) fn sample_record() -> SessionRecord {
    serde_json::from_value(serde_json::json!({
        "sub": "alice", "sid": "s1", "name": "Alice", "preferred_username": null,
        "email": null, "email_verified": null, "picture": null, "roles": ["user"],
        "id_token_claims": {}, "created_at": 1_700_000_000,
        "absolute_expires_at": 1_700_043_200,
        "tokens": {
            "access_token": "at", "refresh_token": "rt", "id_token": "it",
            "access_token_expires_at": 1_700_000_300,
        },
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record is stored as one JSON string and read back whole; its owner
    /// is what the store indexes.
    #[test]
    fn records_round_trip_as_one_string() {
        let record = sample_record();
        let encoded = encode_record(&record);
        let (tag, json) = split_tag(encoded.as_str().unwrap());
        let tag = tag.expect("tagged");
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()) && json.starts_with('{'));
        let other = encode_record(&record);
        assert_ne!(
            split_tag(other.as_str().unwrap()).0,
            Some(tag),
            "every encoding has its own tag, even of the same record"
        );
        let again = decode_record(&encoded).expect("the string form reads");
        assert_eq!(again.sid.as_deref(), Some("s1"));
        assert_eq!(again.roles, vec!["user".to_string()]);
        assert!(
            decode_record(&serde_json::to_value(&record).unwrap()).is_none(),
            "the object form of earlier versions is no longer read"
        );
        let data = HashMap::from([(RECORD_KEY.to_string(), encoded)]);
        assert_eq!(
            index_entry(&data),
            Some(OwnerEntry {
                sub: "alice".to_string(),
                sid: Some("s1".to_string()),
                facts: json!({
                    "handle": record.handle, "created_at": 1_700_000_000,
                    "user_agent": null, "ip": null,
                }),
            })
        );
        assert!(decode_record(&json!("not a record")).is_none());
        let untagged = json!(serde_json::to_string(&record).unwrap());
        assert_eq!(split_tag(untagged.as_str().unwrap()).0, None);
        assert_eq!(
            decode_record(&untagged).unwrap().sid.as_deref(),
            Some("s1"),
            "records stored before the tag still read"
        );
    }
}
