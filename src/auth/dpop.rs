//! DPoP (RFC 9449): access tokens bound to a key, so a token that leaks
//! (from a log, a proxy, an API that received it) is useless without the
//! key. Both sides live here: the proofs the BFF signs for the IdP and the
//! APIs it relays to ([`DpopKey`]), and the checks our own API makes of a
//! proof that comes with a DPoP-bound token ([`verify_proof`]).
//!
//! The BFF's key is one P-256 key per session, made at sign-in and kept in
//! the session record beside the tokens it binds: every instance sharing the
//! store can use the session's tokens (a per-instance key would bind a token
//! to the one instance that asked for it), and ending the session ends the
//! key. A copy of the store holds the key with the tokens; encryption at
//! rest is what protects both there. What DPoP adds is that a token seen
//! anywhere else — a resource server's logs, a relayed API, a proxy — cannot
//! be replayed without the key, which never leaves the BFF.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, Jwk, ThumbprintHash},
    Algorithm, DecodingKey, Validation,
};
use serde::Deserialize;
use serde_json::{json, Value};

pub use super::es256::Es256Key;
use sha2::{Digest, Sha256};

/// The JWT `typ` of a DPoP proof (RFC 9449 §4.2).
const PROOF_TYPE: &str = "dpop+jwt";

/// How far a proof's `iat` may be from now, either way (§11.1: a short
/// window, with the `jti` remembered for as long).
pub const PROOF_WINDOW_SECS: i64 = 60;

/// The signature algorithms our API accepts in proofs (asymmetric only).
pub const ACCEPTED_ALGS: &str = "ES256 PS256 RS256";

/// A session's DPoP key: a P-256 key (see [`Es256Key`]), one per session.
pub type DpopKey = Es256Key;

impl Es256Key {
    /// A proof for one request (§4.2): `htm` and `htu` (the URL without
    /// query and fragment), a fresh `jti`, `iat` now, `ath` for a request
    /// that carries an access token, and the server's `nonce` if it gave one.
    pub fn proof(
        &self,
        htm: &str,
        htu: &url::Url,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: i64,
    ) -> String {
        let mut target = htu.clone();
        target.set_query(None);
        target.set_fragment(None);
        let header = json!({"typ": PROOF_TYPE, "jwk": self.public_jwk()});
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": htm,
            "htu": target.as_str(),
            "iat": now,
        });
        if let Some(token) = access_token {
            claims["ath"] = json!(ath(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign_jwt(header, &claims)
    }
}

/// The nonces servers handed out (§8 at the token endpoint, §9 at a
/// resource), by the URL they were given for: the next proof for that URL
/// carries it, saving the round trip a `use_dpop_nonce` answer costs.
#[derive(Debug, Default)]
pub struct Nonces(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Nonces {
    pub fn get(&self, url: &str) -> Option<String> {
        self.0.lock().expect("nonce lock").get(url).cloned()
    }

    pub fn set(&self, url: &str, nonce: &str) {
        let mut nonces = self.0.lock().expect("nonce lock");
        // A server names a handful of endpoints; anything more is not ours to keep.
        if nonces.len() < 64 || nonces.contains_key(url) {
            nonces.insert(url.to_string(), nonce.to_string());
        }
    }
}

/// Whether a response asks for a proof with the nonce it carries:
/// 400 `use_dpop_nonce` from a token endpoint (§8), or a 401 whose
/// `WWW-Authenticate` says `error="use_dpop_nonce"` from a resource (§9).
pub fn asks_for_nonce(status: u16, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    if !headers.contains_key("dpop-nonce") {
        return false;
    }
    let challenged = headers
        .get_all(axum::http::header::WWW_AUTHENTICATE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce")));
    let refused = status == 400
        && serde_json::from_slice::<Value>(body)
            .is_ok_and(|b| b["error"].as_str() == Some("use_dpop_nonce"));
    (status == 401 && challenged) || refused
}

/// `ath` (§4.2): the base64url SHA-256 of the access token.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// What a valid proof establishes: the thumbprint of its key (to compare
/// with the token's `cnf.jkt`), and its `jti` and `iat` (for the replay
/// cache).
#[derive(Debug)]
pub struct VerifiedProof {
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    ath: Option<String>,
}

/// RFC 9449 §4.3, steps 2–11 except the `jti` replay check (the caller's,
/// against the shared replay cache): one well-formed JWT, `typ`
/// `dpop+jwt`, an asymmetric `alg` we accept, a public `jwk` in the header
/// (no private part) whose signature verifies, `htm` and `htu` those of
/// this request, `iat` within [`PROOF_WINDOW_SECS`] of `now`, and `ath` the
/// hash of the access token it comes with. The error says which check
/// failed, for the `error_description`.
pub fn verify_proof(
    proof: &str,
    method: &str,
    url: &url::Url,
    access_token: &str,
    now: i64,
) -> Result<VerifiedProof, &'static str> {
    let header_part = proof.split('.').next().unwrap_or_default();
    let raw_header: Value = URL_SAFE_NO_PAD
        .decode(header_part)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or("the DPoP proof is not a JWT")?;
    if raw_header["typ"].as_str() != Some(PROOF_TYPE) {
        return Err("the DPoP proof's typ is not dpop+jwt");
    }
    let raw_jwk = raw_header.get("jwk").ok_or("the DPoP proof has no jwk")?;
    // §4.3 step 7: a public key only ("d" holds the private part of EC and
    // RSA keys; "p", "q" and the rest come with it).
    if raw_jwk.get("d").is_some() || raw_jwk.get("k").is_some() {
        return Err("the DPoP proof's jwk is not a public key");
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|_| "the DPoP proof is not a JWT")?;
    let alg = header.alg;
    if !matches!(alg, Algorithm::ES256 | Algorithm::PS256 | Algorithm::RS256) {
        return Err("the DPoP proof's alg is not one of ES256, PS256, RS256");
    }
    let jwk: Jwk = header.jwk.ok_or("the DPoP proof has no jwk")?;
    let fits = matches!(
        (&jwk.algorithm, alg),
        (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
            | (
                AlgorithmParameters::RSA(_),
                Algorithm::PS256 | Algorithm::RS256
            )
    );
    if !fits {
        return Err("the DPoP proof's jwk does not fit its alg");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "the DPoP proof's jwk is not a key")?;
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
        .map_err(|_| "the DPoP proof's signature or claims are invalid")?
        .claims;
    if claims.htm != method {
        return Err("the DPoP proof's htm is not this request's method");
    }
    if !same_target(&claims.htu, url) {
        return Err("the DPoP proof's htu is not this request's URL");
    }
    if (now - claims.iat).abs() > PROOF_WINDOW_SECS {
        return Err("the DPoP proof's iat is too far from now");
    }
    if claims.ath.as_deref() != Some(ath(access_token).as_str()) {
        return Err("the DPoP proof's ath is not the hash of this access token");
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| "the DPoP proof's jwk has no thumbprint")?;
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err("the DPoP proof's jti is missing or too long");
    }
    Ok(VerifiedProof {
        jkt,
        jti: claims.jti,
        iat: claims.iat,
    })
}

/// §4.3 step 9: `htu` compared without query and fragment, after the
/// normalisation RFC 3986 §6.2.2–6.2.3 describes (what parsing does: case of
/// scheme and host, default port, dot segments).
fn same_target(htu: &str, url: &url::Url) -> bool {
    let Ok(mut claimed) = url::Url::parse(htu) else {
        return false;
    };
    let mut actual = url.clone();
    for u in [&mut claimed, &mut actual] {
        u.set_query(None);
        u.set_fragment(None);
    }
    claimed == actual
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn a_proof_verifies_for_its_request_and_token_only() {
        let key = DpopKey::generate();
        let api = url("https://app.example/api/notes?all=true");
        let proof = key.proof("GET", &api, Some("the-token"), None, 1_000);
        let ok = verify_proof(&proof, "GET", &api, "the-token", 1_010).unwrap();
        assert_eq!(ok.jkt, key.thumbprint());
        assert_eq!(ok.iat, 1_000);
        assert_eq!(
            verify_proof(&proof, "POST", &api, "the-token", 1_000).unwrap_err(),
            "the DPoP proof's htm is not this request's method"
        );
        assert_eq!(
            verify_proof(
                &proof,
                "GET",
                &url("https://app.example/api/other"),
                "the-token",
                1_000
            )
            .unwrap_err(),
            "the DPoP proof's htu is not this request's URL"
        );
        assert_eq!(
            verify_proof(&proof, "GET", &api, "another-token", 1_000).unwrap_err(),
            "the DPoP proof's ath is not the hash of this access token"
        );
        assert_eq!(
            verify_proof(&proof, "GET", &api, "the-token", 1_061).unwrap_err(),
            "the DPoP proof's iat is too far from now"
        );
    }

    #[test]
    fn a_key_survives_the_session_record_and_keeps_its_thumbprint() {
        let key = DpopKey::generate();
        let stored = serde_json::to_string(&key).unwrap();
        let back: DpopKey = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert_eq!(format!("{back:?}"), "Es256Key([redacted])");
        let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            key.thumbprint()
        );
    }

    #[test]
    fn forged_proofs_are_refused() {
        let key = DpopKey::generate();
        let api = url("https://app.example/api/notes");
        let proof = key.proof("GET", &api, Some("t"), None, 1_000);
        let parts: Vec<&str> = proof.split('.').collect();
        // Another key's signature under this key's header.
        let other = DpopKey::generate().proof("GET", &api, Some("t"), None, 1_000);
        let spliced = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            other.split('.').nth(2).unwrap()
        );
        assert!(verify_proof(&spliced, "GET", &api, "t", 1_000).is_err());
        // A header claiming another type.
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "jwk": key.public_jwk()});
        let retyped = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify_proof(&retyped, "GET", &api, "t", 1_000).unwrap_err(),
            "the DPoP proof's typ is not dpop+jwt"
        );
        // A private key in the header.
        let mut private = key.public_jwk();
        private["d"] = serde_json::json!("AAAA");
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private});
        let leaky = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify_proof(&leaky, "GET", &api, "t", 1_000).unwrap_err(),
            "the DPoP proof's jwk is not a public key"
        );
        assert!(verify_proof("not.a.jwt", "GET", &api, "t", 1_000).is_err());
        // HS256 is never accepted.
        let header =
            serde_json::json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.public_jwk()});
        let symmetric = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            parts[1],
            parts[2]
        );
        assert!(verify_proof(&symmetric, "GET", &api, "t", 1_000).is_err());
    }
}
