//! Where the user's roles live in the IdP's claims, and how claims are shown.
//!
//! Keycloak puts realm roles at `realm_access.roles` and client roles at
//! `resource_access.<client>.roles`; Logto and many others use a flat `roles`.
//! The path is configured (`OIDC_ROLES_CLAIM`) and parsed once into a
//! [`ClaimPath`]. Roles are read from the *verified* ID token claims (and the
//! userinfo response when it is fetched) — never from anything the browser sends.

use std::fmt;

use serde_json::{Map, Value};

/// A dotted path into a JSON claims object, e.g. `realm_access.roles`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(Vec<String>);

impl ClaimPath {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let segments: Vec<String> = raw.split('.').map(str::to_string).collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err("empty path segment".into());
        }
        if segments.iter().any(|s| s.chars().any(char::is_whitespace)) {
            return Err("whitespace in path".into());
        }
        Ok(Self(segments))
    }

    fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.0.split_first()?;
        rest.iter()
            .try_fold(claims.get(first)?, |value, key| value.as_object()?.get(key))
    }

    /// The roles at this path: an array of strings (non-strings are ignored), or a
    /// single space-separated string. Anything else means "no roles".
    pub fn roles(&self, claims: &Map<String, Value>) -> Vec<String> {
        let mut roles: Vec<String> = match self.lookup(claims) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        roles.retain(|r| !r.is_empty());
        roles.sort();
        roles.dedup();
        roles
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keycloak_realm_roles() {
        let claims = obj(json!({"realm_access": {"roles": ["user", "admin", "user"]}}));
        let path = ClaimPath::parse("realm_access.roles").unwrap();
        assert_eq!(path.roles(&claims), ["admin", "user"]);
    }

    #[test]
    fn keycloak_client_roles_and_flat_roles() {
        let claims = obj(json!({
            "resource_access": {"gatehouse": {"roles": ["editor"]}},
            "roles": "a b"
        }));
        let client = ClaimPath::parse("resource_access.gatehouse.roles").unwrap();
        assert_eq!(client.roles(&claims), ["editor"]);
        assert_eq!(
            ClaimPath::parse("roles").unwrap().roles(&claims),
            ["a", "b"]
        );
    }

    #[test]
    fn missing_or_malformed_roles_mean_none() {
        let path = ClaimPath::parse("realm_access.roles").unwrap();
        for claims in [
            json!({}),
            json!({"realm_access": "admin"}),
            json!({"realm_access": {"roles": {"admin": true}}}),
            json!({"realm_access": {"roles": [1, null, ""]}}),
        ] {
            assert!(path.roles(&obj(claims)).is_empty());
        }
    }

    #[test]
    fn bad_paths_are_rejected() {
        for raw in ["", ".", "a.", ".a", "a..b", "a b"] {
            assert!(ClaimPath::parse(raw).is_err(), "{raw:?}");
        }
    }
}
