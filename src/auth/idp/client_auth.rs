//! How this client proves who it is to the IdP (OIDC Core §9): the secret in
//! HTTP Basic or in the form, or a `private_key_jwt` client assertion
//! (RFC 7523 §2.2): a JWT the client signs with its own key (RS256, PS256
//! or ES256) for each call, so no shared secret exists that a leak of the
//! IdP's or our configuration could reveal. The public key is published at
//! `/auth/jwks.json` for the IdP to fetch.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use openidconnect::{
    core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey},
    JsonWebKeyId, PrivateSigningKey,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::IdpError;
use crate::{
    auth::es256::{self, Es256Key},
    server::config::{ClientKey, RsaAlg},
};

/// RFC 7523 §2.2: the `client_assertion_type` of a JWT assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is good for: one call, sent at once.
const ASSERTION_LIFETIME_SECS: i64 = 60;

/// The client's signing key and its public JWK.
pub struct ClientKeyPair {
    signing: Signing,
    /// The public key as a JWK (`kid` = its RFC 7638 thumbprint, `use`
    /// `sig`, `alg` `RS256`, `PS256` or `ES256`), for `/auth/jwks.json`.
    pub jwk: Value,
}

enum Signing {
    Rsa(Box<CoreRsaPrivateSigningKey>, CoreJwsSigningAlgorithm),
    Ec(Es256Key),
}

impl ClientKeyPair {
    pub fn new(key: &ClientKey) -> Result<Self, String> {
        let (pem, alg) = match key {
            ClientKey::Rsa { pem, alg } => (pem, alg),
            ClientKey::Ec(key) => {
                let mut jwk = key.public_jwk();
                jwk["kid"] = json!(key.thumbprint());
                jwk["use"] = json!("sig");
                jwk["alg"] = json!("ES256");
                return Ok(Self {
                    signing: Signing::Ec(key.clone()),
                    jwk,
                });
            }
        };
        let unnamed = CoreRsaPrivateSigningKey::from_pem(pem, None)?;
        let public =
            serde_json::to_value(unnamed.as_verification_key()).map_err(|e| e.to_string())?;
        let (Some(n), Some(e)) = (public["n"].as_str(), public["e"].as_str()) else {
            return Err("the key has no RSA modulus and exponent".into());
        };
        // RFC 7638 §3.2: the required members in lexicographic order, no spaces.
        let kid = es256::thumbprint(&json!({"kty": "RSA", "n": n, "e": e}))
            .ok_or("the RSA key has no thumbprint")?;
        let jwk =
            json!({"kty": "RSA", "n": n, "e": e, "kid": kid, "use": "sig", "alg": alg.name()});
        let signing = CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid)))?;
        let jws = match alg {
            RsaAlg::Rs256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            RsaAlg::Ps256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        };
        Ok(Self {
            signing: Signing::Rsa(Box::new(signing), jws),
            jwk,
        })
    }

    /// A client assertion for `audience` (RFC 7523 §3, OIDC Core §9): `iss`
    /// and `sub` the client id, `aud` the IdP's issuer, a fresh `jti` (the
    /// IdP refuses one it has seen), `iat` now and `exp` a minute later.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: OffsetDateTime,
    ) -> Result<String, IdpError> {
        let now = now.unix_timestamp();
        let header = json!({"alg": self.jwk["alg"], "typ": "JWT", "kid": self.jwk["kid"]});
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now, "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let (signing, alg) = match &self.signing {
            Signing::Ec(key) => return Ok(key.sign_jwt(header, &claims)),
            Signing::Rsa(key, alg) => (key, alg),
        };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = signing
            .sign(alg, input.as_bytes())
            .map_err(|e| IdpError::Misconfigured(format!("client assertion: {e}")))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../../end2end/idp/dev-client-key.pem");

    /// The assertion is a JWT the public JWK verifies, with the claims
    /// RFC 7523 §3 requires, and a new `jti` every time.
    #[test]
    fn an_assertion_verifies_with_the_published_key_and_is_never_repeated() {
        let pair = ClientKeyPair::new(&ClientKey::Rsa {
            pem: KEY.into(),
            alg: RsaAlg::Rs256,
        })
        .unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let a = pair
            .assertion("gatehouse", "https://idp.example", now)
            .unwrap();
        let b = pair
            .assertion("gatehouse", "https://idp.example", now)
            .unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_components(
            pair.jwk["n"].as_str().unwrap(),
            pair.jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://idp.example"]);
        validation.validate_exp = false;
        let claims: Value = jsonwebtoken::decode(&a, &key, &validation).unwrap().claims;
        assert_eq!(claims["iss"], "gatehouse");
        assert_eq!(claims["sub"], "gatehouse");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            60
        );
        let header = jsonwebtoken::decode_header(&a).unwrap();
        assert_eq!(header.kid.as_deref(), pair.jwk["kid"].as_str());
        let other: Value = jsonwebtoken::decode(&b, &key, &validation).unwrap().claims;
        assert_ne!(claims["jti"], other["jti"]);
        assert!(!pair.jwk.to_string().contains("\"d\""), "no private part");
    }
}

#[cfg(test)]
mod ec_tests {
    use super::*;

    /// An EC client key signs ES256 assertions its published JWK verifies.
    #[test]
    fn an_ec_key_signs_es256_assertions_the_published_jwk_verifies() {
        let pair = ClientKeyPair::new(&ClientKey::Ec(Es256Key::generate())).unwrap();
        assert_eq!(pair.jwk["alg"], "ES256");
        assert!(pair.jwk.get("d").is_none(), "no private part");
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let assertion = pair
            .assertion("gatehouse", "https://idp.example", now)
            .unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(pair.jwk.clone()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["https://idp.example"]);
        validation.validate_exp = false;
        let claims: Value = jsonwebtoken::decode(&assertion, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "gatehouse");
        let header = jsonwebtoken::decode_header(&assertion).unwrap();
        assert_eq!(header.kid.as_deref(), pair.jwk["kid"].as_str());
    }
}
