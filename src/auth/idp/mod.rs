//! The identity provider as the BFF knows it: discovery (cached, retried while
//! the IdP is down), its signing keys (re-fetched on an unknown `kid`), and the
//! protocol calls — code exchange, ID token verification, userinfo, end-session.
//! Every protocol detail is carried by the `openidconnect` crate's types.
//!
//! This file holds the handle on one IdP ([`Idp`]) and what talking to it can
//! fail with ([`IdpError`]); the rest is in:
//! - `types`: the `openidconnect` types as instantiated here (claims, discovery
//!   fields, the `Gh*` aliases);
//! - `discovery`: [`Discovered`] (what discovery found: metadata, client, keys), its lazy and retried discovery,
//!   and the JWKS re-fetch after a key rotation;
//! - `protocol`: code exchange, refresh, ID token verification, userinfo,
//!   end-session URL;
//! - `jwt`: the JWTs checked by hand — logout tokens and JWT access tokens;
//! - `dpop_http`: calls that carry a DPoP proof (RFC 9449), with the IdP's
//!   nonces.
//!
//! Everything is re-exported here: callers name `idp::X`.

pub mod client_auth;
mod discovery;
mod dpop_http;
mod jwt;
mod protocol;
mod types;

pub use discovery::Discovered;
pub use jwt::{JwtError, LogoutClaims, BACKCHANNEL_LOGOUT_EVENT};
pub use protocol::dpop_bound;
pub use types::{
    ExtraProviderMetadata, GhClient, GhIdToken, GhIdTokenClaims, GhTokenResponse, OtherClaims,
    ProviderMetadataWithExtras,
};

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, RwLock};

use super::{idp_http::IdpHttp, subject::SubjectKey};
use crate::server::{
    clock::Clock,
    config::{ClientAuth, Config, IdpConfig, DEFAULT_PROVIDER},
};
use client_auth::ClientKeyPair;

/// Why talking to the IdP failed, in the terms the user-facing pages need.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("identity provider misconfigured: {0}")]
    Misconfigured(String),
    #[error("identity provider rejected the request: {0}")]
    Rejected(String),
    #[error("identity provider sent an invalid response: {0}")]
    BadResponse(String),
    #[error("ID token rejected: {0}")]
    IdToken(String),
}

/// The BFF's handle on the IdP. Cheap to share; discovery happens lazily and is
/// retried on the next use while it fails, so the app starts and serves public
/// pages while the IdP is down and recovers without a restart.
pub struct Idp {
    config: Arc<Config>,
    idp: IdpConfig,
    http: IdpHttp,
    /// Checks `exp`, `iat` and `nbf` of what the IdP signs.
    clock: Clock,
    current: RwLock<Option<Arc<Discovered>>>,
    discovery: Mutex<()>,
    last_jwks_refresh: Mutex<Option<Instant>>,
    /// With `private_key_jwt`: the key that signs client assertions.
    client_key: Option<ClientKeyPair>,
    /// The DPoP nonces this IdP gave (RFC 9449 §8–9), by endpoint.
    dpop_nonces: super::dpop::Nonces,
}

impl Idp {
    pub fn new(config: Arc<Config>, idp: IdpConfig, clock: Clock) -> Self {
        let http = reqwest::Client::builder()
            // openidconnect: never follow redirects (SSRF, token leakage).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("static reqwest configuration is valid");
        let http = IdpHttp::new(http, &idp.issuer, idp.backchannel_base_url.as_ref());
        let client_key = match &idp.client_auth {
            ClientAuth::PrivateKeyJwt(key) => Some(
                // The configuration already parsed it as an RSA key.
                ClientKeyPair::new(key).expect("a client key the configuration accepted"),
            ),
            _ => None,
        };
        Self {
            config,
            idp,
            http,
            clock,
            current: RwLock::new(None),
            discovery: Mutex::new(()),
            last_jwks_refresh: Mutex::new(None),
            client_key,
            dpop_nonces: Default::default(),
        }
    }

    /// The public JWK of this client's `private_key_jwt` key, if it has one.
    pub fn client_jwk(&self) -> Option<&serde_json::Value> {
        self.client_key.as_ref().map(|k| &k.jwk)
    }

    /// The form fields that authenticate this client in a request body:
    /// `client_secret_post`'s id and secret, or `private_key_jwt`'s id and a
    /// fresh assertion for the IdP's issuer; nothing for `client_secret_basic`
    /// (Basic auth, set by the caller).
    fn body_auth(&self) -> Result<Vec<(&'static str, String)>, IdpError> {
        let id = self.idp.client_id.as_str().to_string();
        if let Some(assertion) = self.client_assertion()? {
            return Ok(vec![
                ("client_id", id),
                ("client_assertion_type", client_auth::ASSERTION_TYPE.into()),
                ("client_assertion", assertion),
            ]);
        }
        Ok(match self.idp.client_auth {
            ClientAuth::SecretPost => vec![
                ("client_id", id),
                ("client_secret", self.idp.client_secret.secret().clone()),
            ],
            _ => Vec::new(),
        })
    }

    /// With `private_key_jwt`, a fresh client assertion for the IdP's issuer.
    fn client_assertion(&self) -> Result<Option<String>, IdpError> {
        self.client_key
            .as_ref()
            .map(|key| {
                key.assertion(
                    self.idp.client_id.as_str(),
                    self.idp.issuer.as_str(),
                    self.clock.now(),
                )
            })
            .transpose()
    }

    /// This provider's settings.
    pub fn config(&self) -> &IdpConfig {
        &self.idp
    }

    /// What sessions and pending logins record as their provider: nothing for
    /// the default one, so records from before `OIDC_PROVIDERS` still match.
    pub fn session_name(&self) -> Option<String> {
        (self.idp.name != DEFAULT_PROVIDER).then(|| self.idp.name.clone())
    }

    /// This provider's key for a `sub` or `sid` in the session index and for
    /// what a user owns (two IdPs may issue the same `sub`).
    pub fn owner_key(&self, value: &str) -> SubjectKey {
        SubjectKey::new(self.session_name().as_deref(), value)
    }
}
