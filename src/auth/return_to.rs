//! `ReturnTo`: where to send the browser after login. Parse, don't validate: the
//! only way to get one is [`ReturnTo::parse`], which yields a same-origin
//! absolute path or falls back to `/`. This closes the open-redirect hole
//! (RFC 9700 §4.11) for every caller at once.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReturnTo(String);

/// Paths longer than this are not worth keeping in a pending login.
const MAX_LEN: usize = 2048;

impl ReturnTo {
    pub fn root() -> Self {
        Self("/".into())
    }

    /// Accepts only a relative reference that starts with exactly one `/` and
    /// cannot be read by any browser as another origin. Everything else is `/`.
    pub fn parse(raw: Option<&str>) -> Self {
        raw.and_then(Self::try_parse).unwrap_or_else(Self::root)
    }

    fn try_parse(raw: &str) -> Option<Self> {
        if raw.is_empty() || raw.len() > MAX_LEN || !raw.starts_with('/') {
            return None;
        }
        // `//host` and `/\host` are network-path references in browsers (WHATWG URL
        // treats `\` like `/` for special schemes); control characters and whitespace
        // can be stripped by browsers to produce the same. Refuse them all.
        let bytes = raw.as_bytes();
        if bytes.len() > 1 && (bytes[1] == b'/' || bytes[1] == b'\\') {
            return None;
        }
        if raw
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        {
            return None;
        }
        // Percent-encoded slashes or backslashes could be decoded by a later hop
        // into `//host`; there is no legitimate need for them in a return path.
        let lower = raw.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%09") {
            return None;
        }
        // Never bounce back into the auth endpoints themselves (login loops).
        if raw == "/auth" || raw.starts_with("/auth/") || raw.starts_with("/auth?") {
            return None;
        }
        Some(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReturnTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_same_origin_paths() {
        for ok in [
            "/",
            "/profile",
            "/notes?page=2#top",
            "/a/b/../c",
            "/%7Euser",
        ] {
            assert_eq!(ReturnTo::parse(Some(ok)).as_str(), ok);
        }
    }

    #[test]
    fn everything_else_falls_back_to_root() {
        for bad in [
            "",
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2F/evil.example",
            "/%5cevil.example",
            "javascript:alert(1)",
            "profile",
            " /profile",
            "/pro file",
            "/\tevil",
            "/\n/evil.example",
            "/auth/login",
            "/auth/callback?code=x",
            "/auth",
        ] {
            assert_eq!(ReturnTo::parse(Some(bad)), ReturnTo::root(), "{bad:?}");
        }
        assert_eq!(ReturnTo::parse(None), ReturnTo::root());
        assert_eq!(ReturnTo::parse(Some(&"/a".repeat(2000))), ReturnTo::root());
    }

    /// Resolve the result against a base URL the way a browser would: it must
    /// always stay on the base's origin.
    fn stays_on_origin(path: &str) -> bool {
        let base = url::Url::parse("https://app.example/").unwrap();
        match base.join(path) {
            Ok(u) => u.origin() == base.origin(),
            Err(_) => false,
        }
    }

    proptest! {
        #[test]
        fn result_is_always_a_same_origin_path(raw in ".{0,64}") {
            let r = ReturnTo::parse(Some(&raw));
            prop_assert!(r.as_str().starts_with('/'));
            prop_assert!(stays_on_origin(r.as_str()), "{:?} -> {:?}", raw, r);
        }

        #[test]
        fn slashy_inputs_stay_on_origin(raw in "[/\\\\%a-z0-9.:]{0,16}") {
            let r = ReturnTo::parse(Some(&raw));
            prop_assert!(stays_on_origin(r.as_str()), "{:?} -> {:?}", raw, r);
        }
    }
}
