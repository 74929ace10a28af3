//! Every configured identity provider: the default one (`OIDC_*`) and any named
//! in `OIDC_PROVIDERS` (`OIDC_<NAME>_*`). A session and a pending login record
//! which provider they belong to; everything later (callback, refresh,
//! userinfo, logout) goes to that provider and no other, which is the mix-up
//! defence of RFC 9700 §4.4.2 together with the RFC 9207 `iss` check.

use std::sync::Arc;

use super::idp::Idp;
use crate::server::{clock::Clock, config::Config};

pub struct Idps {
    /// The default provider first, then `OIDC_PROVIDERS` in order.
    all: Vec<Arc<Idp>>,
}

impl Idps {
    pub fn new(config: Arc<Config>, clock: &Clock) -> Self {
        let all = std::iter::once(&config.default_idp)
            .chain(&config.extra_idps)
            .map(|idp| Arc::new(Idp::new(config.clone(), idp.clone(), clock.clone())))
            .collect();
        Self { all }
    }

    pub fn all(&self) -> &[Arc<Idp>] {
        &self.all
    }

    /// The provider configured by the unprefixed `OIDC_*` variables.
    pub fn default_idp(&self) -> &Arc<Idp> {
        &self.all[0]
    }

    pub fn named(&self, name: &str) -> Option<&Arc<Idp>> {
        self.all.iter().find(|o| o.config().name == name)
    }

    /// The provider a session or pending login recorded (`None`: the default
    /// one, which is also what records written before `OIDC_PROVIDERS` mean).
    /// A name no longer configured gives `None`: the caller fails closed.
    pub fn of(&self, idp: Option<&str>) -> Option<&Arc<Idp>> {
        match idp {
            None => Some(self.default_idp()),
            Some(name) => self.named(name),
        }
    }

    /// The provider whose issuer a JWT claims to come from, for choosing which
    /// keys to verify it with. The claim is *unverified* here; the chosen
    /// provider then checks the signature and `iss` exactly, so a token that
    /// names one issuer and is signed by another fails.
    pub fn for_jwt(&self, token: &str) -> Option<&Arc<Idp>> {
        if self.all.len() == 1 {
            return Some(self.default_idp());
        }
        #[derive(serde::Deserialize)]
        struct Iss {
            iss: String,
        }
        let Iss { iss } = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
        self.all.iter().find(|o| o.config().issuer.as_str() == iss)
    }
}

/// `GET /auth/jwks.json`: the public keys this app signs `private_key_jwt`
/// client assertions with (RFC 7517 JWK Set), for an IdP configured to fetch
/// them (`jwks_uri` in its client registration); empty without such keys.
/// Public by nature: it holds only public keys.
pub async fn client_jwks(
    axum::extract::State(state): axum::extract::State<super::state::AuthState>,
) -> axum::Json<serde_json::Value> {
    let mut keys: Vec<serde_json::Value> = Vec::new();
    for jwk in state.idps.all().iter().filter_map(|idp| idp.client_jwk()) {
        if !keys.contains(jwk) {
            keys.push(jwk.clone());
        }
    }
    axum::Json(serde_json::json!({ "keys": keys }))
}
