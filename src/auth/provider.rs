//! The identity provider as the BFF knows it: discovery (cached, retried while
//! the IdP is down), its signing keys (re-fetched on an unknown `kid`), and the
//! protocol calls — code exchange, ID token verification, userinfo, end-session.
//! Every protocol detail is carried by the `openidconnect` crate's types.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use openidconnect::{
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
        CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
        CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
        CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
    },
    AccessToken, AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthUrl,
    AuthorizationCode, ClaimsVerificationError, EndSessionUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdToken, IdTokenClaims, IdTokenFields, IdTokenVerifier, JsonWebKeySet,
    JwsSigningAlgorithm, LogoutProviderMetadata, LogoutRequest, Nonce, NonceVerifier,
    OAuth2TokenResponse, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, SubjectIdentifier, TokenResponse, UserInfoError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};

use super::{idp_http::IdpHttp, subject::owner_key};
use crate::server::config::{Config, OidcConfig, DEFAULT_PROVIDER};

/// Claims beyond the standard ones (roles, `sid`, anything the IdP adds), kept
/// as JSON so the configured roles path can reach them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}
impl AdditionalClaims for OtherClaims {}

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

/// Discovery fields Gatehouse reads beyond the crate's own.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraProviderMetadata {
    /// RFC 9207 §3: when true, the `iss` authorization response parameter is required.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}
impl AdditionalProviderMetadata for ExtraProviderMetadata {}

/// `ProviderMetadataWithLogout`, with [`ExtraProviderMetadata`] inside.
pub type ProviderMetadataWithExtras = ProviderMetadata<
    LogoutProviderMetadata<ExtraProviderMetadata>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

pub type GhIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub type GhIdTokenClaims = IdTokenClaims<OtherClaims, CoreGenderClaim>;
pub type GhTokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        openidconnect::EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
pub type GhClient = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    GhTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why talking to the IdP failed, in the terms the user-facing pages need.
/// Why a JWT from the IdP was not accepted: the token itself (`Invalid`) or
/// the IdP could not be asked for its keys (`Idp`).
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Idp(IdpError),
}

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

/// One successful discovery: metadata (with its JWKS) and a client built from it.
pub struct Provider {
    pub metadata: ProviderMetadataWithExtras,
    pub client: GhClient,
    /// ID token algorithms we accept: what the IdP advertises, minus `none` and
    /// every shared-secret (HMAC) algorithm, so a token "signed" with the client
    /// secret or not at all is never accepted (OIDC Core §3.1.3.7 items 6–8).
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
}

impl Provider {
    fn new(
        metadata: ProviderMetadataWithExtras,
        config: &Config,
        idp: &OidcConfig,
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
        let client = GhClient::from_provider_metadata(
            metadata.clone(),
            idp.client_id.clone(),
            Some(idp.client_secret.clone()),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(AuthType::BasicAuth);
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

    pub fn end_session_endpoint(&self) -> Option<&EndSessionUrl> {
        self.metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
    }

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

    fn verifier(&self, idp: &OidcConfig) -> IdTokenVerifier<'_, CoreJsonWebKey> {
        // A public-client verifier never holds the client secret, so HMAC
        // signatures cannot verify even if an algorithm slipped through.
        IdTokenVerifier::new_public_client(
            idp.client_id.clone(),
            self.metadata.issuer().clone(),
            self.metadata.jwks().clone(),
        )
        .set_allowed_algs(self.allowed_algs.clone())
    }
}

/// The BFF's handle on the IdP. Cheap to share; discovery happens lazily and is
/// retried on the next use while it fails, so the app starts and serves public
/// pages while the IdP is down and recovers without a restart.
pub struct Oidc {
    config: Arc<Config>,
    idp: OidcConfig,
    http: IdpHttp,
    current: RwLock<Option<Arc<Provider>>>,
    discovery: Mutex<()>,
    last_jwks_refresh: Mutex<Option<Instant>>,
}

/// Re-fetching keys on an unknown `kid` is rate-limited so that tokens with
/// random `kid`s cannot make us hammer the IdP.
const JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);

impl Oidc {
    pub fn new(config: Arc<Config>, idp: OidcConfig) -> Self {
        let http = reqwest::Client::builder()
            // openidconnect: never follow redirects (SSRF, token leakage).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("static reqwest configuration is valid");
        let http = IdpHttp::new(http, &idp.issuer, idp.backchannel_base_url.as_ref());
        Self {
            config,
            idp,
            http,
            current: RwLock::new(None),
            discovery: Mutex::new(()),
            last_jwks_refresh: Mutex::new(None),
        }
    }

    /// An `Oidc` whose discovery already happened, built from a discovery
    /// document and a JWKS: for the fuzz targets, which must not touch the
    /// network. A `kid` it does not know still triggers one JWKS re-fetch.
    #[doc(hidden)]
    pub fn with_discovery(
        config: Arc<Config>,
        idp: OidcConfig,
        discovery_json: &str,
        jwks_json: &str,
    ) -> Result<Self, IdpError> {
        let bad = |e: serde_json::Error| IdpError::BadResponse(e.to_string());
        let metadata: ProviderMetadataWithExtras =
            serde_json::from_str(discovery_json).map_err(bad)?;
        let metadata = metadata.set_jwks(serde_json::from_str(jwks_json).map_err(bad)?);
        let provider = Provider::new(metadata, &config, &idp)?;
        let oidc = Self::new(config, idp);
        Ok(Self {
            current: RwLock::new(Some(Arc::new(provider))),
            ..oidc
        })
    }

    /// This provider's settings.
    pub fn config(&self) -> &OidcConfig {
        &self.idp
    }

    /// What sessions and pending logins record as their provider: nothing for
    /// the default one, so records from before `OIDC_PROVIDERS` still match.
    pub fn session_name(&self) -> Option<String> {
        (self.idp.name != DEFAULT_PROVIDER).then(|| self.idp.name.clone())
    }

    /// This provider's key for a `sub` or `sid` in the session index and for
    /// what a user owns (two IdPs may issue the same `sub`).
    pub fn owner_key(&self, value: &str) -> String {
        owner_key(self.session_name().as_deref(), value)
    }

    /// The provider, but only if the IdP answers right now: the cached
    /// discovery is reused, yet its document is fetched again (one small GET with
    /// a short timeout) so a login never sends the browser to an IdP that went
    /// down after start-up, and `/readyz` tells the truth.
    pub async fn reachable_provider(&self) -> Result<Arc<Provider>, IdpError> {
        let provider = self.provider().await?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            provider.issuer().trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| IdpError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(IdpError::Unreachable(format!(
                "discovery answered {}",
                response.status()
            )));
        }
        Ok(provider)
    }

    /// The discovered provider, discovering it now if needed.
    pub async fn provider(&self) -> Result<Arc<Provider>, IdpError> {
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

    async fn discover(&self) -> Result<Provider, IdpError> {
        // Discovery checks that the document's issuer equals ours exactly
        // (OIDC Discovery §4.3), which is what defeats issuer confusion.
        let metadata =
            ProviderMetadataWithExtras::discover_async(self.idp.issuer.clone(), &self.http)
                .await
                .map_err(|e| match e {
                    openidconnect::DiscoveryError::Request(e) => {
                        IdpError::Unreachable(e.to_string())
                    }
                    openidconnect::DiscoveryError::Response(status, _, _)
                        if status.is_server_error() =>
                    {
                        IdpError::Unreachable(format!("discovery answered {status}"))
                    }
                    other => IdpError::Misconfigured(other.to_string()),
                })?;
        let metadata = self.browser_facing_urls_public(metadata)?;
        Provider::new(metadata, &self.config, &self.idp)
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
    async fn refresh_jwks(&self, stale: &Provider) -> Result<Option<Arc<Provider>>, IdpError> {
        {
            let mut last = self.last_jwks_refresh.lock().await;
            if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_MIN_INTERVAL) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        let jwks = JsonWebKeySet::fetch_async(stale.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| IdpError::Unreachable(format!("JWKS: {e}")))?;
        let metadata = stale.metadata.clone().set_jwks(jwks);
        let provider = Arc::new(Provider::new(metadata, &self.config, &self.idp)?);
        *self.current.write().await = Some(provider.clone());
        tracing::info!("identity provider signing keys re-fetched");
        Ok(Some(provider))
    }

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
        validation.set_required_spec_claims(&["iss", "aud", "exp"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| JwtError::Invalid(e.to_string()))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match data.claims.get("iat") {
            None => {}
            Some(iat) => match iat.as_i64() {
                Some(iat) if iat <= now + 60 => {}
                Some(_) => return Err(JwtError::Invalid("iat is in the future".into())),
                None => return Err(JwtError::Invalid("iat is not a number".into())),
            },
        }
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

    /// Exchanges the authorization code (with the PKCE verifier, RFC 7636) and
    /// verifies the ID token it returns.
    pub async fn exchange_code(
        &self,
        code: String,
        verifier: PkceCodeVerifier,
        nonce: &Nonce,
    ) -> Result<(GhTokenResponse, GhIdTokenClaims), IdpError> {
        let provider = self.provider().await?;
        let response = provider
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| IdpError::Misconfigured(e.to_string()))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response
            .id_token()
            .ok_or_else(|| IdpError::BadResponse("token response has no id_token".into()))?;
        let claims = self
            .verify_id_token(provider, id_token, response.access_token(), nonce)
            .await?;
        Ok((response, claims))
    }

    /// A refresh answer has no nonce to check (OIDC Core §12.2).
    fn no_nonce(_: Option<&Nonce>) -> Result<(), String> {
        Ok(())
    }

    /// OIDC Core §3.1.3.7: signature (allowed algorithms only), `iss`, `aud`,
    /// `azp`, `exp`, `iat`, `nonce`, and `at_hash` when present (§3.1.3.8).
    /// A key the cached JWKS lacks triggers one JWKS re-fetch (the IdP rotated
    /// its keys), at login and at refresh alike.
    async fn verify_id_token<N: NonceVerifier + Copy>(
        &self,
        provider: Arc<Provider>,
        id_token: &GhIdToken,
        access_token: &AccessToken,
        nonce: N,
    ) -> Result<GhIdTokenClaims, IdpError> {
        let mut provider = provider;
        let claims = loop {
            let result = id_token
                .claims(&provider.verifier(&self.idp), nonce)
                .cloned();
            match result {
                Ok(claims) => break claims,
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) => match self.refresh_jwks(&provider).await? {
                    Some(fresh) => provider = fresh,
                    None => return Err(IdpError::IdToken("no matching signing key".into())),
                },
                Err(e) => return Err(IdpError::IdToken(e.to_string())),
            }
        };
        if let Some(expected) = claims.access_token_hash() {
            let verifier = provider.verifier(&self.idp);
            let alg = id_token
                .signing_alg()
                .map_err(|e| IdpError::IdToken(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| IdpError::IdToken(e.to_string()))?;
            let actual = AccessTokenHash::from_token(access_token, alg, key)
                .map_err(|e| IdpError::IdToken(e.to_string()))?;
            if actual != *expected {
                return Err(IdpError::IdToken(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        Ok(claims)
    }

    /// The refresh grant (RFC 6749 §6). A new ID token in the answer must pass
    /// the same checks as at login, except the nonce, and name the same `iss`
    /// and `sub` (OIDC Core §12.2); otherwise the answer is rejected.
    pub async fn refresh(
        &self,
        refresh_token: &RefreshToken,
        sub: &str,
    ) -> Result<(GhTokenResponse, Option<GhIdTokenClaims>), IdpError> {
        let provider = self.provider().await?;
        let response = provider
            .client
            .exchange_refresh_token(refresh_token)
            .map_err(|e| IdpError::Misconfigured(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let claims = match response.id_token() {
            None => None,
            Some(id_token) => {
                let no_nonce: fn(Option<&Nonce>) -> Result<(), String> = Self::no_nonce;
                let claims = self
                    .verify_id_token(provider, id_token, response.access_token(), no_nonce)
                    .await?;
                if claims.subject().as_str() != sub {
                    return Err(IdpError::IdToken(
                        "refreshed ID token names another sub".into(),
                    ));
                }
                Some(claims)
            }
        };
        Ok((response, claims))
    }

    /// The user as the IdP's userinfo endpoint returns it now. The `sub` must be
    /// the session's (OIDC Core §5.3.2), or the response is discarded.
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        sub: &str,
    ) -> Result<Map<String, Value>, IdpError> {
        let provider = self.provider().await?;
        let claims: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> = provider
            .client
            .user_info(
                access_token.clone(),
                Some(SubjectIdentifier::new(sub.to_string())),
            )
            .map_err(|e| IdpError::Misconfigured(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                UserInfoError::Request(e) => IdpError::Unreachable(e.to_string()),
                UserInfoError::Response(status, _, _) if status.is_server_error() => {
                    IdpError::Unreachable(format!("userinfo answered {status}"))
                }
                UserInfoError::Response(status, _, _) => {
                    IdpError::Rejected(format!("userinfo answered {status}"))
                }
                other => IdpError::BadResponse(other.to_string()),
            })?;
        match serde_json::to_value(&claims) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(IdpError::BadResponse(
                "userinfo is not a JSON object".into(),
            )),
        }
    }

    /// RP-Initiated Logout 1.0 §2: the end-session URL with `id_token_hint`,
    /// `client_id` and `post_logout_redirect_uri`, if the IdP has one.
    pub async fn end_session_url(&self, id_token: &str) -> Option<String> {
        let provider = self.provider().await.ok()?;
        let endpoint = provider.end_session_endpoint()?.clone();
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(self.idp.client_id.clone())
            .set_post_logout_redirect_uri(
                PostLogoutRedirectUrl::new(self.config.base_url.join("/")).ok()?,
            );
        if let Ok(token) = id_token.parse::<GhIdToken>() {
            request = request.set_id_token_hint(&token);
        }
        Some(request.http_get_url().to_string())
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> IdpError {
    match e {
        RequestTokenError::ServerResponse(r) => IdpError::Rejected(r.error().to_string()),
        RequestTokenError::Request(e) => IdpError::Unreachable(e.to_string()),
        RequestTokenError::Parse(e, _) => IdpError::BadResponse(e.to_string()),
        RequestTokenError::Other(e) => IdpError::BadResponse(e),
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
