//! How a user or an IdP session is named across providers: the key the
//! session index, the notes and `/admin` use.

/// How the session index and the app's data name a user (`sub`) or an IdP
/// session (`sid`) of provider `idp`: two providers may hand out the same
/// `sub`, and a logout token from one must never end the other's sessions.
///
/// The encoding is injective: `|` and `\` in the value are escaped, so the
/// only unescaped `|` is the one after a provider's name (names are letters,
/// digits and `-`). The default provider's keys are the bare (escaped)
/// values, as before `OIDC_PROVIDERS` existed — unchanged for any `sub`
/// without `|` or `\` — and a default-provider `sub` of `logto|X` is
/// `logto\|X`, never provider `logto`'s `X`.
fn owner_key(idp: Option<&str>, value: &str) -> String {
    let mut key = String::with_capacity(value.len() + idp.map_or(0, |n| n.len() + 1));
    if let Some(name) = idp {
        key.push_str(name);
        key.push('|');
    }
    for c in value.chars() {
        if c == '|' || c == '\\' {
            key.push('\\');
        }
        key.push(c);
    }
    key
}

/// A user (`sub`) or IdP session (`sid`) as the session index, the notes and
/// `/admin` name it: qualified by provider ([`owner_key`]'s encoding). Not the
/// IdP's raw `sub` (`SessionRecord.sub`, `UserView.sub`), which two providers
/// may share: the type keeps the two from being mixed up. The stores and the
/// app database below the core keep it as the string [`SubjectKey::as_str`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubjectKey(String);

impl SubjectKey {
    /// `value` (a `sub` or `sid`) of provider `idp` (`None`: the default one).
    pub fn new(idp: Option<&str>, value: &str) -> Self {
        Self(owner_key(idp, value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn owner_keys_of_different_providers_never_collide() {
        assert_eq!(owner_key(None, "7c1e-uuid"), "7c1e-uuid");
        assert_eq!(owner_key(Some("logto"), "X"), "logto|X");
        assert_eq!(owner_key(None, "logto|X"), "logto\\|X");
        assert_ne!(owner_key(None, "logto|X"), owner_key(Some("logto"), "X"));
    }

    proptest! {
        /// Equal keys only for equal (provider, value) pairs.
        #[test]
        fn owner_key_is_injective(
            a in (proptest::option::of("[a-z0-9-]{1,6}"), "[a-z|\\\\]{0,8}"),
            b in (proptest::option::of("[a-z0-9-]{1,6}"), "[a-z|\\\\]{0,8}"),
        ) {
            let key = |(idp, v): &(Option<String>, String)| owner_key(idp.as_deref(), v);
            prop_assert_eq!(key(&a) == key(&b), a == b);
        }
    }
}
