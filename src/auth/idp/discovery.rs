//! The discovered provider and its cache: discovery (lazy, retried on the next
//! use while the IdP is down), the [`Discovered`] built from it (metadata, JWKS,
//! client, accepted algorithms) and the JWKS re-fetch after a key rotation.

use crate::server::telemetry::{metrics, traces};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use openidconnect::{
    core::CoreJwsSigningAlgorithm, AuthType, AuthUrl, EndSessionUrl, JsonWebKeySet,
    JwsSigningAlgorithm, RedirectUrl,
};
use tokio::sync::RwLock;
use tracing::Instrument;

use super::{
    types::{GhClient, ProviderMetadataWithExtras},
    Idp, IdpError,
};
use crate::server::{
    clock::Clock,
    config::{ClientAuth, Config, IdpConfig},
};

/// One successful discovery: metadata (with its JWKS) and a client built from it.
pub struct Discovered {
    pub metadata: ProviderMetadataWithExtras,
    pub client: GhClient,
    /// ID token algorithms we accept: what the IdP advertises, minus `none` and
    /// every shared-secret (HMAC) algorithm, so a token "signed" with the client
    /// secret or not at all is never accepted (OIDC Core §3.1.3.7 items 6–8).
    pub(super) allowed_algs: Vec<CoreJwsSigningAlgorithm>,
}

impl Discovered {
    fn new(
        metadata: ProviderMetadataWithExtras,
        config: &Config,
        idp: &IdpConfig,
    ) -> Result<Self, IdpError> {
        let redirect = RedirectUrl::new(config.redirect_uri_for(&idp.name))
            .map_err(|e| IdpError::Misconfigured(format!("redirect URI: {e}")))?;
        if let Some(methods) = &metadata
            .additional_metadata()
            .additional_metadata
            .code_challenge_methods_supported
        {
            if !methods.iter().any(|m| m == "S256") {
                return Err(IdpError::Misconfigured(
                    "the IdP does not support PKCE S256 (code_challenge_methods_supported)".into(),
                ));
            }
        }
        if metadata.token_endpoint().is_none() {
            return Err(IdpError::Misconfigured(
                "discovery has no token_endpoint".into(),
            ));
        }
        let advertised = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| !alg.uses_shared_secret() && **alg != CoreJwsSigningAlgorithm::None)
            .cloned()
            .collect::<Vec<_>>();
        let allowed_algs = if advertised.is_empty() {
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        } else {
            advertised
        };
        // With private_key_jwt no secret is sent: the client id goes in the
        // body, beside the assertion each request adds (`Idp::client_assertion`).
        let (secret, auth_type) = match idp.client_auth {
            ClientAuth::SecretBasic => (Some(idp.client_secret.clone()), AuthType::BasicAuth),
            ClientAuth::SecretPost => (Some(idp.client_secret.clone()), AuthType::RequestBody),
            ClientAuth::PrivateKeyJwt(_) => (None, AuthType::RequestBody),
        };
        let client =
            GhClient::from_provider_metadata(metadata.clone(), idp.client_id.clone(), secret)
                .set_redirect_uri(redirect)
                .set_auth_type(auth_type);
        Ok(Self {
            metadata,
            client,
            allowed_algs,
        })
    }

    pub fn issuer(&self) -> &str {
        self.metadata.issuer().as_str()
    }

    pub fn requires_iss_parameter(&self) -> bool {
        self.metadata
            .additional_metadata()
            .additional_metadata
            .authorization_response_iss_parameter_supported
    }

    pub fn par_endpoint(&self) -> Option<&str> {
        self.metadata
            .additional_metadata()
            .additional_metadata
            .pushed_authorization_request_endpoint
            .as_deref()
    }

    pub fn requires_par(&self) -> bool {
        self.metadata
            .additional_metadata()
            .additional_metadata
            .require_pushed_authorization_requests
    }

    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.metadata
            .additional_metadata()
            .additional_metadata
            .revocation_endpoint
            .as_deref()
    }

    pub fn end_session_endpoint(&self) -> Option<&EndSessionUrl> {
        self.metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
    }
}

/// Re-fetching keys on an unknown `kid` is rate-limited so that tokens with
/// random `kid`s cannot make us hammer the IdP.
const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);

impl Idp {
    /// An `Idp` whose discovery already happened, built from a discovery
    /// document and a JWKS: for the fuzz targets, which must not touch the
    /// network. A `kid` it does not know still triggers one JWKS re-fetch.
    #[doc(hidden)]
    pub fn with_discovery(
        config: Arc<Config>,
        idp: IdpConfig,
        discovery_json: &str,
        jwks_json: &str,
    ) -> Result<Self, IdpError> {
        let bad = |e: serde_json::Error| IdpError::BadResponse(e.to_string());
        let metadata: ProviderMetadataWithExtras =
            serde_json::from_str(discovery_json).map_err(bad)?;
        let metadata = metadata.set_jwks(serde_json::from_str(jwks_json).map_err(bad)?);
        let provider = Discovered::new(metadata, &config, &idp)?;
        let undiscovered = Self::new(config, idp, Clock::system());
        Ok(Self {
            current: RwLock::new(Some(Arc::new(provider))),
            ..undiscovered
        })
    }

    /// The provider, but only if the IdP answers right now: the cached
    /// discovery is reused, yet its document is fetched again (see
    /// [`answers`](Self::answers)) so `/readyz` tells the truth.
    pub async fn reachable_provider(&self) -> Result<Arc<Discovered>, IdpError> {
        let provider = self.provider().await?;
        self.answers(&provider).await?;
        Ok(provider)
    }

    /// Whether the IdP answers right now: its discovery document fetched
    /// again, one small GET with a short timeout, so a login without a
    /// pushed request never sends the browser to an IdP that went down after
    /// start-up.
    pub async fn answers(&self, provider: &Discovered) -> Result<(), IdpError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            provider.issuer().trim_end_matches('/')
        );
        let span = traces::idp_span(&self.idp.name, "discovery");
        let response = span
            .in_scope(|| self.http.get(&url))
            .timeout(Duration::from_secs(3))
            .send()
            .instrument(span.clone())
            .await;
        traces::answered(&span, response.as_ref().ok().map(|r| r.status().as_u16()));
        let response = response.map_err(|e| IdpError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(IdpError::Unreachable(format!(
                "discovery answered {}",
                response.status()
            )));
        }
        Ok(())
    }

    /// The discovered provider, discovering it now if needed.
    pub async fn provider(&self) -> Result<Arc<Discovered>, IdpError> {
        if let Some(p) = self.current.read().await.clone() {
            return Ok(p);
        }
        let _one_at_a_time = self.discovery.lock().await;
        if let Some(p) = self.current.read().await.clone() {
            return Ok(p);
        }
        let provider = Arc::new(self.discover().await?);
        *self.current.write().await = Some(provider.clone());
        tracing::info!(issuer = provider.issuer(), "identity provider discovered");
        Ok(provider)
    }

    async fn discover(&self) -> Result<Discovered, IdpError> {
        // Discovery checks that the document's issuer equals ours exactly
        // (OIDC Discovery §4.3), which is what defeats issuer confusion.
        let started = std::time::Instant::now();
        let span = traces::idp_span(&self.idp.name, "discovery");
        let metadata =
            ProviderMetadataWithExtras::discover_async(self.idp.issuer.clone(), &self.http)
                .instrument(span.clone())
                .await;
        // The document and its key set, as one call.
        metrics::idp_call(&self.idp.name, "discovery", started.elapsed());
        if metadata.is_err() {
            traces::failed(&span);
        }
        let metadata = metadata.map_err(|e| match e {
            openidconnect::DiscoveryError::Request(e) => IdpError::Unreachable(e.to_string()),
            openidconnect::DiscoveryError::Response(status, _, _) if status.is_server_error() => {
                IdpError::Unreachable(format!("discovery answered {status}"))
            }
            other => IdpError::Misconfigured(other.to_string()),
        })?;
        let metadata = self.browser_facing_urls_public(metadata)?;
        Discovered::new(metadata, &self.config, &self.idp)
    }

    /// On a split network, an IdP that builds discovery from the request's
    /// host names its authorize and end-session endpoints on the internal
    /// origin; the browser cannot reach that, so they go back to the public one.
    fn browser_facing_urls_public(
        &self,
        metadata: ProviderMetadataWithExtras,
    ) -> Result<ProviderMetadataWithExtras, IdpError> {
        let bad = |e: url::ParseError| IdpError::Misconfigured(e.to_string());
        let authorize = AuthUrl::new(self.http.public(metadata.authorization_endpoint().as_str()))
            .map_err(bad)?;
        let mut metadata = metadata.set_authorization_endpoint(authorize);
        let extra = metadata.additional_metadata_mut();
        if let Some(end) = &extra.end_session_endpoint {
            extra.end_session_endpoint =
                Some(EndSessionUrl::new(self.http.public(end.as_str())).map_err(bad)?);
        }
        Ok(metadata)
    }

    /// Replaces the key set after the IdP rotated its keys (OIDC Core §10.1.1).
    pub(super) async fn refresh_jwks(
        &self,
        stale: &Discovered,
    ) -> Result<Option<Arc<Discovered>>, IdpError> {
        {
            let mut last = self.last_jwks_refresh.lock().await;
            if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN_INTERVAL) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        let started = std::time::Instant::now();
        let span = traces::idp_span(&self.idp.name, "jwks");
        let jwks = JsonWebKeySet::fetch_async(stale.metadata.jwks_uri(), &self.http)
            .instrument(span.clone())
            .await;
        metrics::idp_call(&self.idp.name, "jwks", started.elapsed());
        if jwks.is_err() {
            traces::failed(&span);
        }
        let jwks = jwks.map_err(|e| IdpError::Unreachable(format!("JWKS: {e}")))?;
        let metadata = stale.metadata.clone().set_jwks(jwks);
        let provider = Arc::new(Discovered::new(metadata, &self.config, &self.idp)?);
        *self.current.write().await = Some(provider.clone());
        tracing::info!("identity provider signing keys re-fetched");
        Ok(Some(provider))
    }
}
