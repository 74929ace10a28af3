//! The OpenID Connect calls to the IdP, made with the `openidconnect` client:
//! the code exchange and the refresh grant (each with ID token verification),
//! userinfo, and the end-session URL for RP-initiated logout; and token
//! revocation (RFC 7009), sent with our own HTTP client.

use crate::server::telemetry::{metrics, traces};
use std::sync::Arc;

use openidconnect::{
    core::{CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey},
    AccessToken, AccessTokenHash, AuthorizationCode, ClaimsVerificationError, CsrfToken,
    IdTokenVerifier, LogoutRequest, Nonce, NonceVerifier, OAuth2TokenResponse, PkceCodeVerifier,
    PostLogoutRedirectUrl, RefreshToken, RequestTokenError, SignatureVerificationError,
    StandardErrorResponse, SubjectIdentifier, TokenResponse, UserInfoError,
};
use serde_json::{Map, Value};
use tracing::Instrument;

use super::client_auth::ASSERTION_TYPE;
use super::{
    discovery::Discovered,
    types::{GhIdToken, GhIdTokenClaims, GhTokenResponse, OtherClaims},
    Idp, IdpError,
};
use crate::auth::dpop::DpopKey;
use crate::server::{
    clock::Clock,
    config::{is_loopback_host, ClientAuth, IdpConfig},
};

impl Discovered {
    /// `exp` and `iat` are checked against `clock`.
    fn verifier(&self, idp: &IdpConfig, clock: &Clock) -> IdTokenVerifier<'_, CoreJsonWebKey> {
        // A public-client verifier never holds the client secret, so HMAC
        // signatures cannot verify even if an algorithm slipped through.
        let clock = clock.clone();
        IdTokenVerifier::new_public_client(
            idp.client_id.clone(),
            self.metadata.issuer().clone(),
            self.metadata.jwks().clone(),
        )
        .set_allowed_algs(self.allowed_algs.clone())
        .set_time_fn(move || clock.chrono_now())
    }
}

/// How long a login waits for the IdP to answer its pushed request: the
/// push also stands in for the "does the IdP answer" probe a login without
/// PAR makes (3 s, `Idp::answers`), so an IdP that hangs ends the login on
/// the "unreachable" page within seconds too, not after the IdP client's
/// 15 s. (The push does more than the probe, client authentication and a
/// write at the IdP, hence a little longer.)
const PAR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Idp {
    /// Exchanges the authorization code (with the PKCE verifier, RFC 7636) and
    /// verifies the ID token it returns. With a DPoP key, the request carries
    /// a proof of it (RFC 9449 §5) and the access token comes bound to it.
    pub async fn exchange_code(
        &self,
        code: String,
        verifier: PkceCodeVerifier,
        nonce: &Nonce,
        dpop: Option<&DpopKey>,
    ) -> Result<(GhTokenResponse, GhIdTokenClaims), IdpError> {
        let provider = self.provider().await?;
        let mut request = provider
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| IdpError::Misconfigured(e.to_string()))?
            .set_pkce_verifier(verifier);
        if let Some(assertion) = self.client_assertion()? {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let response = request
            .request_async(&self.sender("token", dpop, None))
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
        provider: Arc<Discovered>,
        id_token: &GhIdToken,
        access_token: &AccessToken,
        nonce: N,
    ) -> Result<GhIdTokenClaims, IdpError> {
        let mut provider = provider;
        let claims = loop {
            let result = id_token
                .claims(&provider.verifier(&self.idp, &self.clock), nonce)
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
            let verifier = provider.verifier(&self.idp, &self.clock);
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
        resource: Option<&str>,
        dpop: Option<&DpopKey>,
    ) -> Result<(GhTokenResponse, Option<GhIdTokenClaims>), IdpError> {
        let provider = self.provider().await?;
        let mut request = provider
            .client
            .exchange_refresh_token(refresh_token)
            .map_err(|e| IdpError::Misconfigured(e.to_string()))?;
        // RFC 8707 §2.2: an access token for that API only.
        if let Some(resource) = resource {
            request = request.add_extra_param("resource", resource);
        }
        if let Some(assertion) = self.client_assertion()? {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let response = request
            .request_async(&self.sender("token", dpop, None))
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
    /// With `dpop`, the token is bound to that key: presented as
    /// `Authorization: DPoP` with a proof (RFC 9449 §7).
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        sub: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<Map<String, Value>, IdpError> {
        let provider = self.provider().await?;
        let request = provider
            .client
            .user_info(
                access_token.clone(),
                Some(SubjectIdentifier::new(sub.to_string())),
            )
            .map_err(|e| IdpError::Misconfigured(e.to_string()))?;
        let token = access_token.secret().as_str();
        let claims: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> = request
            .request_async(&self.sender("userinfo", dpop, Some(token)))
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

    /// RFC 7009 §2.1: revokes a refresh token at the IdP's revocation
    /// endpoint, with `token_type_hint=refresh_token` and the client's
    /// authentication (`client_secret_basic`, as at the token endpoint).
    /// `Ok(false)` when discovery names no endpoint. An IdP answers 200 for
    /// a token it no longer knows (§2.2), so success says only that the
    /// token is no longer valid.
    ///
    /// Sent with our HTTP client rather than `openidconnect`'s `revoke_token`,
    /// which refuses any `http` endpoint: the endpoint must use TLS (§2), as
    /// our configuration rule has it for every IdP URL, except on loopback,
    /// where the dev IdP runs.
    pub async fn revoke_refresh_token(&self, token: &RefreshToken) -> Result<bool, IdpError> {
        let provider = self.provider().await?;
        let Some(endpoint) = provider.revocation_endpoint() else {
            return Ok(false);
        };
        let response = self
            .client_post(
                "revocation_endpoint",
                endpoint,
                &[
                    ("token", token.secret().as_str()),
                    ("token_type_hint", "refresh_token"),
                ],
                None,
            )
            .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            status if status.is_server_error() => Err(IdpError::Unreachable(format!(
                "revocation answered {status}"
            ))),
            status => Err(IdpError::Rejected(format!("revocation answered {status}"))),
        }
    }

    /// A form POST to one of the IdP's endpoints (`name` in discovery) as
    /// this client: `client_secret_basic` (the id and secret form-encoded
    /// first, RFC 6749 §2.3.1), or the fields of `client_secret_post` or
    /// `private_key_jwt` in the form (which then never carries a
    /// `client_id` of the caller's beside them). Only https, or http on a loopback host: the
    /// client secret and the request's content must not cross a network in
    /// the clear (RFC 7009 §2, RFC 9126 §2). `within` bounds the call, body
    /// included, tighter than the IdP client's own timeout.
    async fn client_post(
        &self,
        name: &str,
        endpoint: &str,
        form: &[(&str, &str)],
        within: Option<std::time::Duration>,
    ) -> Result<reqwest::Response, IdpError> {
        let misconfigured = |why: String| IdpError::Misconfigured(format!("{name}: {why}"));
        let url = url::Url::parse(endpoint).map_err(|e| misconfigured(e.to_string()))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback_host(&url)) {
            return Err(misconfigured("not https".into()));
        }
        let body_auth = self.body_auth()?;
        let mut fields: Vec<(&str, &str)> = form
            .iter()
            .filter(|(name, _)| !body_auth.iter().any(|(auth, _)| auth == name))
            .copied()
            .collect();
        fields.extend(
            body_auth
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        );
        let endpoint = match name {
            "revocation_endpoint" => "revocation",
            "pushed_authorization_request_endpoint" => "par",
            _ => "other",
        };
        let span = traces::idp_span(&self.config().name, endpoint);
        let mut request = span.in_scope(|| self.http.post(url.as_str()));
        if let Some(within) = within {
            request = request.timeout(within);
        }
        if self.idp.client_auth == ClientAuth::SecretBasic {
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(
                encode(self.idp.client_id.as_str()),
                Some(encode(self.idp.client_secret.secret())),
            );
        }
        let started = std::time::Instant::now();
        let response = request.form(&fields).send().instrument(span.clone()).await;
        traces::answered(&span, response.as_ref().ok().map(|r| r.status().as_u16()));
        metrics::idp_call(&self.config().name, endpoint, started.elapsed());
        response.map_err(|e| IdpError::Unreachable(e.without_url().to_string()))
    }

    /// Pushes the authorization request `authorize` (the URL the browser
    /// would have been sent to) to the IdP's PAR endpoint (RFC 9126 §2.1),
    /// and returns the URL the browser is sent to instead: the authorization
    /// endpoint with only `client_id` and the `request_uri` the IdP answered
    /// (§4). The request's parameters (state, nonce, PKCE challenge,
    /// redirect URI, scopes) then travel server to server, authenticated,
    /// where the browser cannot see or change them.
    pub async fn push_authorization_request(
        &self,
        provider: &Discovered,
        authorize: &url::Url,
    ) -> Result<url::Url, IdpError> {
        let endpoint = provider.par_endpoint().ok_or_else(|| {
            IdpError::Misconfigured("no pushed_authorization_request_endpoint".into())
        })?;
        let params: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
        let form: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let response = self
            .client_post(
                "pushed_authorization_request_endpoint",
                endpoint,
                &form,
                Some(PAR_TIMEOUT),
            )
            .await?;
        let status = response.status();
        let body: Option<Value> = response.json().await.ok();
        let field = |name: &str| {
            body.as_ref()
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        // §2.2: 201 with `request_uri`; §2.3: an OAuth error object otherwise.
        let request_uri = match (status.is_success(), field("request_uri"), field("error")) {
            (true, Some(uri), _) if !uri.is_empty() => uri,
            (_, _, Some(error)) => return Err(IdpError::Rejected(format!("PAR: {error}"))),
            (false, ..) => return Err(IdpError::Unreachable(format!("PAR answered {status}"))),
            (true, ..) => {
                return Err(IdpError::BadResponse(
                    "PAR answered without a request_uri".into(),
                ))
            }
        };
        let mut url = provider.metadata.authorization_endpoint().url().clone();
        url.query_pairs_mut()
            .append_pair("client_id", self.idp.client_id.as_str())
            .append_pair("request_uri", &request_uri);
        Ok(url)
    }

    /// RP-Initiated Logout 1.0 §2: the end-session URL with `id_token_hint`,
    /// `client_id`, `post_logout_redirect_uri` (our `/auth/logged-out`) and
    /// `state`, if the IdP has one.
    pub async fn end_session_url(&self, id_token: &str, state: &str) -> Option<String> {
        let provider = self.provider().await.ok()?;
        let endpoint = provider.end_session_endpoint()?.clone();
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(self.idp.client_id.clone())
            .set_post_logout_redirect_uri(
                PostLogoutRedirectUrl::new(self.config.base_url.join("/auth/logged-out")).ok()?,
            )
            .set_state(CsrfToken::new(state.to_string()));
        if let Ok(token) = id_token.parse::<GhIdToken>() {
            request = request.set_id_token_hint(&token);
        }
        Some(request.http_get_url().to_string())
    }
}

/// Whether the IdP bound the access token in `response` to the proof's key
/// (RFC 9449 §5: `token_type` `DPoP`). An IdP that answers `Bearer` did not
/// (§5 allows it); the token is then presented as a bearer token.
pub fn dpop_bound(response: &GhTokenResponse) -> bool {
    response.token_type().as_ref().eq_ignore_ascii_case("dpop")
}

/// What a failed token-endpoint call means. An OAuth error (RFC 6749 §5.2,
/// whatever its status and code: some providers answer 403 `invalid_code`)
/// is a refusal. An answer that is no token response at all (an HTML error
/// page, an empty body, JSON without `access_token`: a proxy or a failing
/// IdP) says the IdP could not answer, like a network error: the login ends
/// with "try again", and a refresh keeps the session and answers 503
/// rather than ending it on an IdP hiccup. A token response that does not
/// parse (e.g. an ID token that is not a JWT) is a bad answer: fail closed.
fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> IdpError {
    match e {
        RequestTokenError::ServerResponse(r) => IdpError::Rejected(r.error().to_string()),
        RequestTokenError::Request(e) => IdpError::Unreachable(e.to_string()),
        RequestTokenError::Parse(e, body) if is_token_response(&body) => {
            IdpError::BadResponse(e.to_string())
        }
        RequestTokenError::Parse(_, body) => IdpError::Unreachable(format!(
            "the token endpoint answered no token response ({} bytes)",
            body.len()
        )),
        // oauth2's words for an empty body or a content type other than JSON.
        RequestTokenError::Other(e) => IdpError::Unreachable(format!("the token endpoint: {e}")),
    }
}

/// Whether `body` is a JSON object with an `access_token` member.
fn is_token_response(body: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(body).is_ok_and(|m| m.contains_key("access_token"))
}
