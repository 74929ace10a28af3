//! P-256 keys that sign compact JWTs with ES256 (RFC 7518 §3.4): the
//! session's DPoP key (`dpop`) and an EC client key for `private_key_jwt`
//! (`idp::client_auth`). Never printed; serialized (in a session record)
//! as the 32-byte private scalar, base64url.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Es256Key(SigningKey);

impl Es256Key {
    pub fn generate() -> Self {
        Self(SigningKey::random(&mut rand_core::OsRng))
    }

    /// A P-256 private key in PEM: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC
    /// PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Option<Self> {
        use p256::pkcs8::DecodePrivateKey;
        p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
            .ok()
            .map(|key| Self(SigningKey::from(key)))
    }

    /// A P-256 private key from its 32-byte scalar (a JWK's `d`).
    pub fn from_scalar(d: &[u8]) -> Option<Self> {
        p256::SecretKey::from_slice(d)
            .ok()
            .map(|key| Self(SigningKey::from(key)))
    }

    /// The public key as a JWK (RFC 7518 §6.2).
    pub fn public_jwk(&self) -> Value {
        let point = self.0.verifying_key().to_encoded_point(false);
        let coordinate = |c: Option<&p256::FieldBytes>| {
            URL_SAFE_NO_PAD.encode(c.expect("an uncompressed point has both coordinates"))
        };
        json!({"kty": "EC", "crv": "P-256", "x": coordinate(point.x()), "y": coordinate(point.y())})
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.public_jwk()).expect("a P-256 JWK has a thumbprint")
    }

    /// `header` (its `alg` set to ES256) and `claims`, signed: a compact JWS.
    pub fn sign_jwt(&self, mut header: Value, claims: &Value) -> String {
        header["alg"] = json!("ES256");
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self.0.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK, as
/// jsonwebtoken computes it; `None` for what is not an EC, RSA or OKP key.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone())
        .ok()?
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .ok()
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Es256Key([redacted])")
    }
}

impl PartialEq for Es256Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bytes() == other.0.to_bytes()
    }
}

impl Eq for Es256Key {}

impl Serialize for Es256Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&URL_SAFE_NO_PAD.encode(self.0.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for Es256Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        SigningKey::from_slice(&bytes)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}
