//! The JWTs from the IdP that are not ID tokens, checked by hand with
//! `jsonwebtoken` against the IdP's keys: back-channel logout tokens
//! ([`LogoutClaims`]) and JWT access tokens presented to our API.

use openidconnect::core::CoreJwsSigningAlgorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{discovery::Discovered, Idp, IdpError};

/// The member of `events` that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A verified logout token's claims (Back-Channel Logout 1.0 §2.4).
#[derive(Debug, Deserialize)]
pub struct LogoutClaims {
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub jti: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    #[serde(default)]
    pub events: Map<String, Value>,
}

/// Why a JWT from the IdP was not accepted: the token itself (`Invalid`) or
/// the IdP could not be asked for its keys (`Idp`).
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Idp(IdpError),
}

impl Discovered {
    /// The key for a JWT's `kid` (or the only key, when the JWT names none).
    /// `Ok(None)`: no such key — the caller may re-fetch the JWKS once.
    fn decoding_key(
        &self,
        kid: Option<&str>,
    ) -> Result<Option<jsonwebtoken::DecodingKey>, IdpError> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::to_value(self.metadata.jwks())
            .and_then(serde_json::from_value)
            .map_err(|e| IdpError::BadResponse(format!("JWKS: {e}")))?;
        let signing = |k: &&jsonwebtoken::jwk::Jwk| {
            !matches!(
                k.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        };
        let jwk = match kid {
            Some(kid) => set
                .keys
                .iter()
                .filter(signing)
                .find(|k| k.common.key_id.as_deref() == Some(kid)),
            None => {
                let keys: Vec<_> = set.keys.iter().filter(signing).collect();
                if keys.len() > 1 {
                    return Err(IdpError::IdToken("no kid and several keys".into()));
                }
                keys.into_iter().next()
            }
        };
        jwk.map(|k| {
            jsonwebtoken::DecodingKey::from_jwk(k).map_err(|e| IdpError::BadResponse(e.to_string()))
        })
        .transpose()
    }
}

impl Idp {
    /// Verifies a JWT signed by the IdP that is not an ID token (logout tokens,
    /// JWT access tokens): `typ` (when present) must be one of `typs`, the
    /// algorithm one the IdP advertises for ID tokens minus `none` and HMAC
    /// (a token "signed" with a shared secret never verifies), the key from the
    /// IdP's JWKS (re-fetched once, rate-limited, on an unknown `kid`), then
    /// `iss` exactly, `aud` containing `audience`, `exp` and `nbf` with 60 s of
    /// clock skew, and `iat` not in the future.
    async fn verify_jwt<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        typs: &[&str],
        audience: &str,
    ) -> Result<T, JwtError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Invalid(e.to_string()))?;
        if let Some(typ) = header.typ.as_deref() {
            if !typs.iter().any(|t| t.eq_ignore_ascii_case(typ)) {
                return Err(JwtError::Invalid(format!(
                    "typ {typ:?} is not accepted here"
                )));
            }
        }
        let mut provider = self.provider().await.map_err(JwtError::Idp)?;
        let allowed = jws_algorithm(header.alg).is_some_and(|a| provider.allowed_algs.contains(&a));
        if !allowed {
            return Err(JwtError::Invalid("algorithm not allowed".into()));
        }
        let key = loop {
            match provider
                .decoding_key(header.kid.as_deref())
                .map_err(|e| JwtError::Invalid(e.to_string()))?
            {
                Some(key) => break key,
                None => match self.refresh_jwks(&provider).await.map_err(JwtError::Idp)? {
                    Some(fresh) => provider = fresh,
                    None => return Err(JwtError::Invalid("no matching signing key".into())),
                },
            }
        };
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_issuer(&[provider.issuer()]);
        validation.set_audience(&[audience]);
        // Required here; compared below with the core's clock, not jsonwebtoken's.
        validation.set_required_spec_claims(&["iss", "aud", "exp"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| JwtError::Invalid(e.to_string()))?;
        check_times(&data.claims, self.clock.unix_now())?;
        serde_json::from_value(data.claims).map_err(|e| JwtError::Invalid(e.to_string()))
    }

    /// Verifies a back-channel `logout_token` (Back-Channel Logout 1.0 §2.6,
    /// steps 1–7 except `jti` replay, which the caller checks): [`Self::verify_jwt`]
    /// with `typ` `logout+jwt` or `JWT` and our client id as audience, then a
    /// required `iat`, the back-channel-logout event, `sub` or `sid`, and no `nonce`.
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, IdpError> {
        let bad = |why: &str| IdpError::IdToken(format!("logout_token: {why}"));
        let raw: Map<String, Value> = self
            .verify_jwt(token, &["logout+jwt", "JWT"], self.idp.client_id.as_str())
            .await
            .map_err(|e| match e {
                JwtError::Idp(e) => e,
                JwtError::Invalid(why) => bad(&why),
            })?;
        // §2.6 step 6 forbids the claim itself, whatever its value: a
        // `"nonce": null` is a nonce claim too (found by the logout_token fuzz target).
        if raw.contains_key("nonce") {
            return Err(bad("nonce is forbidden"));
        }
        let mut claims: LogoutClaims =
            serde_json::from_value(Value::Object(raw)).map_err(|e| bad(&e.to_string()))?;
        // An empty `sub` or `sid` names nobody: treat it as absent.
        claims.sub = claims.sub.filter(|s| !s.is_empty());
        claims.sid = claims.sid.filter(|s| !s.is_empty());
        let event = claims.events.get(BACKCHANNEL_LOGOUT_EVENT);
        if !event.is_some_and(Value::is_object) {
            return Err(bad("events lacks the back-channel logout event"));
        }
        if claims.sub.is_none() && claims.sid.is_none() {
            return Err(bad("neither sub nor sid"));
        }
        if claims.jti.is_empty() {
            return Err(bad("jti is empty"));
        }
        Ok(claims)
    }

    /// Verifies a JWT access token presented to our API (RFC 9068; the Logto
    /// RBAC guide's checks): [`Self::verify_jwt`] with `typ` `at+jwt` or `JWT`
    /// and `API_AUDIENCE` as audience. A logout token or an ID token (audience:
    /// our client id) cannot pass for one. Returns the claims for scope, role
    /// and organization checks.
    pub async fn verify_access_token(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        self.verify_jwt(
            token,
            &["at+jwt", "application/at+jwt", "JWT"],
            &self.config.api_audience,
        )
        .await
    }
}

/// The JOSE algorithm a JWT header names, as openidconnect names it; `None`
/// for HMAC, whose key would be the client secret (never accepted), and for
/// any algorithm not listed here.
fn jws_algorithm(alg: jsonwebtoken::Algorithm) -> Option<CoreJwsSigningAlgorithm> {
    use jsonwebtoken::Algorithm as A;
    use CoreJwsSigningAlgorithm as C;
    Some(match alg {
        A::RS256 => C::RsaSsaPkcs1V15Sha256,
        A::RS384 => C::RsaSsaPkcs1V15Sha384,
        A::RS512 => C::RsaSsaPkcs1V15Sha512,
        A::PS256 => C::RsaSsaPssSha256,
        A::PS384 => C::RsaSsaPssSha384,
        A::PS512 => C::RsaSsaPssSha512,
        A::ES256 => C::EcdsaP256Sha256,
        A::ES384 => C::EcdsaP384Sha384,
        A::EdDSA => C::EdDsa,
        // HMAC, and anything a later jsonwebtoken adds: refused until named here.
        _ => return None,
    })
}

/// Clock skew allowed on `exp`, `nbf` and `iat` (seconds).
const LEEWAY: i64 = 60;

/// `exp` (required) not passed, `nbf` (if present) reached and `iat` (if
/// present) not in the future, at `now` (Unix seconds) with [`LEEWAY`].
/// Each must be a number (RFC 7519 §2 NumericDate: fractions allowed).
fn check_times(claims: &Value, now: i64) -> Result<(), JwtError> {
    let time = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| JwtError::Invalid(format!("{name} is not a number"))),
    };
    let now = now as f64;
    let leeway = LEEWAY as f64;
    match time("exp")? {
        Some(exp) if exp >= now - leeway => {}
        Some(_) => return Err(JwtError::Invalid("the token has expired".into())),
        None => return Err(JwtError::Invalid("exp is missing".into())),
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now + leeway) {
        return Err(JwtError::Invalid("the token is not valid yet (nbf)".into()));
    }
    if time("iat")?.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::Invalid("iat is in the future".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn refused(claims: Value) -> String {
        match check_times(&claims, NOW) {
            Err(JwtError::Invalid(why)) => why,
            other => panic!("{claims} passed: {other:?}"),
        }
    }

    #[test]
    fn times_are_checked_against_the_given_now_with_a_minute_of_skew() {
        assert!(check_times(&json!({"exp": NOW - 59}), NOW).is_ok());
        assert!(check_times(
            &json!({"exp": NOW as f64 + 1.5, "nbf": NOW + 60, "iat": NOW + 60}),
            NOW
        )
        .is_ok());
        assert_eq!(refused(json!({"exp": NOW - 61})), "the token has expired");
        assert_eq!(refused(json!({})), "exp is missing");
        assert_eq!(refused(json!({"exp": "soon"})), "exp is not a number");
        assert_eq!(
            refused(json!({"exp": NOW + 600, "nbf": NOW + 61})),
            "the token is not valid yet (nbf)"
        );
        assert_eq!(
            refused(json!({"exp": NOW + 600, "iat": NOW + 61})),
            "iat is in the future"
        );
        assert_eq!(
            refused(json!({"exp": NOW + 600, "iat": null})),
            "iat is not a number"
        );
    }
}
