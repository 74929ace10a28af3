//! The browser-facing OIDC flow: login (and sign-up), callback, logout.
//! Authorization code flow with PKCE S256, `state` and `nonce` (OIDC Core §3.1,
//! RFC 9700 §2.1.1); confidential client with `client_secret_basic`.

use std::net::SocketAddr;

use axum::{
    extract::{rejection::QueryRejection, ConnectInfo, Path, Query, State},
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Redirect, Response},
    Extension,
};
use openidconnect::{
    core::CoreAuthenticationFlow, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    TokenResponse,
};
use serde::Deserialize;

use super::state::AuthState;
use super::{
    chooser,
    dpop::DpopKey,
    error::LoginError,
    idp::{dpop_bound, Discovered, GhIdTokenClaims, GhTokenResponse, Idp, IdpError},
    return_to::ReturnTo,
    revoke,
    session::{AuthSession, PendingLogin, RawIdToken, SessionRecord, StepUpAsk, TokenSet},
    step_up,
};
use crate::server::{
    config::{parse_acr_values, ParMode, DEFAULT_PROVIDER},
    telemetry::metrics,
};

#[derive(Debug, Deserialize)]
pub struct LoginParams {
    return_to: Option<String>,
    /// Which provider (`OIDC_PROVIDERS`); without it, several providers get a
    /// chooser page and a single one is used directly.
    idp: Option<String>,
    /// Step-up (as a 401 `insufficient_user_authentication` asked): the
    /// sign-in must be at most this many seconds old (OIDC Core §3.1.2.1).
    max_age: Option<String>,
    /// Step-up: the authentication context classes wanted, space-separated.
    acr_values: Option<String>,
}

/// `GET /auth/login?return_to=/path[&idp=name][&max_age=s][&acr_values=…]`
/// → 303 to the IdP.
pub async fn login(
    State(state): State<AuthState>,
    session: AuthSession,
    Query(params): Query<LoginParams>,
) -> Response {
    start_login(&state, &session, params, false).await
}

/// `GET /auth/signup` → the same, with `prompt=create` (OpenID Connect
/// "Initiating User Registration via OpenID Connect 1.0").
pub async fn signup(
    State(state): State<AuthState>,
    session: AuthSession,
    Query(params): Query<LoginParams>,
) -> Response {
    start_login(&state, &session, params, true).await
}

async fn start_login(
    state: &AuthState,
    session: &AuthSession,
    params: LoginParams,
    signup: bool,
) -> Response {
    let return_to = ReturnTo::parse(params.return_to.as_deref());
    let step_up = match step_up_ask(state, session, &params).await {
        Ok(step_up) => step_up,
        Err(e) => return fail(e, &return_to),
    };
    let oidc = match params.idp.as_deref() {
        Some(name) => match state.idps.named(name) {
            Some(oidc) => oidc,
            None => return fail(LoginError::UnknownProvider, &return_to),
        },
        None if state.idps.all().len() > 1 => {
            return chooser::page(state.idps.all(), &return_to, signup)
        }
        None => state.idps.default_idp(),
    };
    send_to_idp(state, session, oidc, return_to, signup, step_up).await
}

/// The step-up a login asks for (`max_age`, `acr_values`), if any, and the
/// signed-in user it is for. Malformed values end the login with an error
/// page rather than being dropped: a dropped `max_age` would be a login
/// that cannot meet the step-up it was started for.
async fn step_up_ask(
    state: &AuthState,
    session: &AuthSession,
    params: &LoginParams,
) -> Result<Option<StepUpAsk>, LoginError> {
    let max_age = match params.max_age.as_deref().filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(secs) if secs <= 366 * 24 * 3600 => Some(secs),
            _ => return Err(LoginError::InvalidStepUp),
        },
    };
    let acr_values = match params.acr_values.as_deref() {
        None => None,
        Some(v) => {
            let values = parse_acr_values(v).map_err(|_| LoginError::InvalidStepUp)?;
            (!values.is_empty()).then(|| values.join(" "))
        }
    };
    if max_age.is_none() && acr_values.is_none() {
        return Ok(None);
    }
    let of = session
        .record(&state.decoded, state.clock.now())
        .await
        .map_err(|e| LoginError::Store(e.to_string()))?
        .map(|record| record.subject_key().into_string());
    Ok(Some(StepUpAsk {
        max_age,
        acr_values,
        of,
        prompted_login: false,
    }))
}

/// Remembers a new pending login and sends the browser to `oidc`'s
/// authorization endpoint with it.
async fn send_to_idp(
    state: &AuthState,
    session: &AuthSession,
    oidc: &Idp,
    return_to: ReturnTo,
    signup: bool,
    step_up: Option<StepUpAsk>,
) -> Response {
    if let Some(too_many) = state.login_budget.refusal() {
        return too_many;
    }
    let provider = match oidc.provider().await {
        Ok(p) => p,
        Err(e) => return fail(LoginError::Idp(e), &return_to),
    };
    let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = provider
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scopes(oidc.config().scopes.iter().cloned())
        .set_pkce_challenge(pkce_challenge);
    let ask = step_up.clone().unwrap_or_default();
    // What this login asks for itself replaces the configured defaults.
    let own_prompt = signup || ask.prompted_login;
    for (name, value) in &oidc.config().extra_auth_params {
        let replaced = match name.as_str() {
            "prompt" => own_prompt,
            "max_age" => ask.max_age.is_some(),
            "acr_values" => ask.acr_values.is_some(),
            _ => false,
        };
        if !replaced {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
    }
    if signup {
        request = request.add_extra_param("prompt", "create");
    } else if ask.prompted_login {
        request = request.add_extra_param("prompt", "login");
    }
    let max_age = ask.max_age.map(|secs| secs.to_string());
    if let Some(max_age) = &max_age {
        request = request.add_extra_param("max_age", max_age.as_str());
    }
    if let Some(acr_values) = &ask.acr_values {
        request = request.add_extra_param("acr_values", acr_values.as_str());
    }
    // RFC 8707 §2.1: name every API the session will want a token of its
    // own for; IdPs such as oidc-provider and Logto grant a refresh token
    // only the resources its authorization request named.
    for resource in state.config.resources() {
        request = request.add_extra_param("resource", resource);
    }
    let (url, csrf_state, nonce) = request.url();
    let url = match pushed_or_checked(oidc, &provider, url).await {
        Ok(url) => url,
        Err(IdpError::Rejected(why)) => return fail(LoginError::RequestRefused(why), &return_to),
        Err(e) => return fail(LoginError::Idp(e), &return_to),
    };
    let pending = PendingLogin {
        idp: oidc.session_name(),
        nonce,
        pkce_verifier,
        return_to: return_to.clone(),
        issued_at: state.clock.now(),
        step_up,
    };
    if let Err(e) = session
        .begin_login(&state.store, csrf_state.secret(), pending)
        .await
    {
        tracing::error!(error = %e, "cannot store pending login");
        return fail(LoginError::Store(e.to_string()), &return_to);
    }
    metrics::login_started(&oidc.config().name);
    see_other(url.as_str())
}

/// Where the browser goes: `authorize` as it is, or, with pushed
/// authorization requests (RFC 9126; `OIDC_PAR`), the authorization endpoint
/// with the `request_uri` the IdP gave for the pushed request. `auto` pushes
/// whenever discovery names a PAR endpoint; `required` and an IdP that
/// requires PAR (`require_pushed_authorization_requests`) under `off` are
/// configuration errors that end the login on the error page.
///
/// Never to an IdP that went down after discovery: a pushed request is
/// itself a call to the IdP and fails as "unreachable" then; without one,
/// the IdP is asked first ([`Idp::answers`]). (Asking before a push too
/// would be a second round trip per login for nothing.)
async fn pushed_or_checked(
    oidc: &Idp,
    provider: &Discovered,
    authorize: url::Url,
) -> Result<url::Url, IdpError> {
    let push = match oidc.config().par {
        ParMode::Auto => provider.par_endpoint().is_some(),
        ParMode::Required => true,
        ParMode::Off if provider.requires_par() => {
            return Err(IdpError::Misconfigured(
                "the IdP requires pushed authorization requests, and OIDC_PAR=off".into(),
            ))
        }
        ParMode::Off => false,
    };
    if push {
        return oidc.push_authorization_request(provider, &authorize).await;
    }
    oidc.answers(provider).await?;
    Ok(authorize)
}

/// The authorization response (RFC 6749 §4.1.2, RFC 9207 §2).
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
}

/// `GET /auth/callback` → validates everything, rotates the session id, stores
/// the tokens server-side, 303 to `return_to`. Any failure: an error page and
/// no new session.
pub async fn callback(
    State(state): State<AuthState>,
    session: AuthSession,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    params: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    finish_login(state, session, headers, peer, params, None).await
}

/// `GET /auth/callback/<name>`: the redirect URI of provider `<name>` from
/// `OIDC_PROVIDERS`. A response arriving here is accepted only for a login
/// that was sent to `<name>` (RFC 9700 §4.4.2: per-IdP redirect URIs defend
/// against mix-up even when an IdP sends no `iss`).
pub async fn callback_of(
    State(state): State<AuthState>,
    Path(idp): Path<String>,
    session: AuthSession,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    params: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    finish_login(state, session, headers, peer, params, Some(idp)).await
}

/// Both callbacks; `arrived_at` is the provider whose redirect URI this is
/// (`None`: the default provider's `/auth/callback`).
async fn finish_login(
    state: AuthState,
    session: AuthSession,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    params: Result<Query<CallbackParams>, QueryRejection>,
    arrived_at: Option<String>,
) -> Response {
    // A malformed query is treated like an empty one: it has no valid state.
    let params = params.map(|Query(p)| p).unwrap_or_default();
    // The pending login is consumed before anything else, so any response —
    // good or bad — can be used once only.
    let pending = match params.state.as_deref() {
        Some(s) if !s.is_empty() => session.take_login(&state.store, s, state.clock.now()).await,
        _ => Ok(None),
    };
    let pending = match pending {
        Ok(Some(p)) => p,
        Ok(None) => return fail(LoginError::UnknownState, &ReturnTo::root()),
        Err(e) => return fail(LoginError::Store(e.to_string()), &ReturnTo::root()),
    };
    let return_to = pending.return_to.clone();
    // The state is spent either way; a response for a login sent to another
    // provider is refused before its code goes anywhere.
    if pending.idp != arrived_at {
        return fail(LoginError::ProviderMismatch, &return_to);
    }
    let step_up = pending.step_up.clone();
    match complete_login(&state, &params, pending).await {
        Ok(record)
            if step_up
                .as_ref()
                .and_then(|s| s.of.as_deref())
                .is_some_and(|of| of != record.subject_key().as_str()) =>
        {
            // A step-up confirms who is signed in; another user is refused
            // and the session stays as it was (its tokens untouched).
            fail(LoginError::StepUpOtherUser, &return_to)
        }
        Err(LoginError::StaleSignIn) if step_up.as_ref().is_some_and(|s| !s.prompted_login) => {
            // The IdP ignored `max_age` (it kept an older sign-in): ask
            // again, this time with `prompt=login`, once.
            let Some(oidc) = state.idps.of(arrived_at.as_deref()) else {
                return fail(LoginError::UnknownProvider, &return_to);
            };
            tracing::info!("the IdP ignored max_age; asking again with prompt=login");
            let step_up = step_up.map(|s| StepUpAsk {
                prompted_login: true,
                ..s
            });
            send_to_idp(&state, &session, oidc, return_to, false, step_up).await
        }
        Ok(mut record) => {
            record.user_agent = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(200).collect());
            record.ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip().to_string());
            let sub = record.subject_key();
            let seen = (
                record.name.clone(),
                record.email.clone(),
                record.roles.clone(),
            );
            let idp_session = (record.idp.clone(), record.sid.clone());
            match session.sign_in(record).await {
                // The session this sign-in replaced (signing in again, or a
                // step-up) is gone: its refresh token is revoked if it came
                // from another IdP session. Not if from the same one: the
                // IdP may hold both under one grant, and revoking the old
                // token would end the grant (RFC 7009 §2.1) and with it the
                // session just made. (Without `sid`s it cannot be told.)
                Ok(Some(replaced))
                    if replaced.idp != idp_session.0
                        || (replaced.sid.is_some()
                            && idp_session.1.is_some()
                            && replaced.sid != idp_session.1) =>
                {
                    revoke::revoke_in_background(&state, vec![replaced])
                }
                Ok(_) => {}
                Err(e) => return fail(LoginError::Store(e.to_string()), &return_to),
            }
            // For `/admin`'s user list; a failure here must not undo the login.
            if let Err(e) = state
                .db
                .saw_user(sub.as_str(), &seen.0, seen.1.as_deref(), &seen.2)
                .await
            {
                tracing::warn!(error = %e, "could not record the user for /admin");
            }
            tracing::info!(sub = %sub, "signed in");
            metrics::login_completed(arrived_at.as_deref().unwrap_or(DEFAULT_PROVIDER));
            see_other(return_to.as_str())
        }
        Err(e) => fail(e, &return_to),
    }
}

fn fail(error: LoginError, return_to: &ReturnTo) -> Response {
    tracing::warn!(reason = error.reason(), detail = ?error, "login failed");
    metrics::login_failed(error.reason());
    error.page(return_to)
}

async fn complete_login(
    state: &AuthState,
    params: &CallbackParams,
    pending: PendingLogin,
) -> Result<SessionRecord, LoginError> {
    // The provider this login was sent to, and no other (RFC 9700 §4.4).
    let oidc = state
        .idps
        .of(pending.idp.as_deref())
        .ok_or(LoginError::UnknownProvider)?;
    let provider = oidc.provider().await.map_err(LoginError::Idp)?;
    let code = authorization_code(params, provider.issuer(), provider.requires_iss_parameter())?;
    // RFC 9449: the session's own key, made for this sign-in.
    let dpop_key = oidc.config().dpop.then(DpopKey::generate);
    let (response, claims) = oidc
        .exchange_code(
            code,
            pending.pkce_verifier,
            &pending.nonce,
            dpop_key.as_ref(),
        )
        .await
        .map_err(LoginError::Idp)?;
    if let Some(ask) = &pending.step_up {
        step_up_met(ask, &claims)?;
    }
    let mut record = build_record(state, oidc, &response, &claims).map_err(LoginError::Idp)?;
    record.tokens.dpop = dpop_key.is_some() && dpop_bound(&response);
    record.dpop_key = dpop_key;
    Ok(record)
}

/// Whether a step-up sign-in's ID token meets what was asked. OIDC Core
/// §3.1.2.1 / §2: with `max_age` sent, `auth_time` is required, and the RP
/// checks it; `acr` must be one of the `acr_values` asked for (the IdP may
/// sign in at another level than requested, and says so in `acr`).
fn step_up_met(ask: &StepUpAsk, claims: &GhIdTokenClaims) -> Result<(), LoginError> {
    if let Some(max_age) = ask.max_age {
        let Some(auth_time) = claims.auth_time() else {
            return Err(LoginError::StepUpNotMet(
                "The identity provider did not say when you signed in (auth_time).",
            ));
        };
        if !step_up::within_max_age(
            max_age,
            auth_time.timestamp(),
            claims.issue_time().timestamp(),
        ) {
            return Err(LoginError::StaleSignIn);
        }
    }
    if let Some(acr_values) = &ask.acr_values {
        let acr = claims.auth_context_ref().map(|acr| acr.as_str());
        if !acr.is_some_and(|acr| acr_values.split(' ').any(|v| v == acr)) {
            return Err(LoginError::StepUpNotMet(
                "The identity provider signed you in at another level than this needs.",
            ));
        }
    }
    Ok(())
}

/// The code from an authorization response whose pending login was found,
/// or why there is none. RFC 9207 §2.4: `iss` must equal the issuer this login
/// went to, and must be present when the IdP advertises
/// `authorization_response_iss_parameter_supported`; checked before the error
/// member, so even an error page is only shown for our own IdP's answer.
pub fn authorization_code(
    params: &CallbackParams,
    issuer: &str,
    iss_required: bool,
) -> Result<String, LoginError> {
    match params.iss.as_deref() {
        Some(iss) if iss != issuer => return Err(LoginError::IssuerMismatch),
        None if iss_required => return Err(LoginError::IssuerMismatch),
        _ => {}
    }
    if let Some(error) = &params.error {
        return Err(LoginError::Denied(error.clone()));
    }
    params
        .code
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or(LoginError::MissingCode)
}

fn build_record(
    state: &AuthState,
    oidc: &Idp,
    response: &GhTokenResponse,
    claims: &GhIdTokenClaims,
) -> Result<SessionRecord, IdpError> {
    let all_claims = match serde_json::to_value(claims) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(IdpError::BadResponse(
                "ID token claims are not an object".into(),
            ))
        }
    };
    let id_token = response
        .id_token()
        .ok_or_else(|| IdpError::BadResponse("no id_token".into()))?
        .to_string();
    let now = state.clock.now();
    let access_token_expires_at = response
        .expires_in()
        .and_then(|d| time::Duration::try_from(d).ok())
        .map(|d| now + d);
    let absolute = state.config.session.absolute_timeout;
    let text = |name: &str| {
        all_claims
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    // The sign-in's age as the IdP states it (both times on its clock),
    // counted back from now on ours.
    let auth_time = claims.auth_time().map(|at| {
        let age = (claims.issue_time().timestamp() - at.timestamp()).max(0);
        now - time::Duration::seconds(age)
    });
    let preferred_username = claims.preferred_username().map(|u| u.to_string());
    let name = text("name")
        .or_else(|| preferred_username.clone())
        .or_else(|| text("email"))
        .unwrap_or_else(|| claims.subject().to_string());
    Ok(SessionRecord {
        idp: oidc.session_name(),
        sub: claims.subject().to_string(),
        sid: text("sid"),
        name,
        preferred_username,
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified(),
        picture: text("picture").filter(|p| p.starts_with("https://") || p.starts_with("http://")),
        roles: oidc.config().roles_claim.roles(&all_claims),
        id_token_claims: all_claims,
        tokens: TokenSet {
            access_token: response.access_token().clone(),
            refresh_token: response.refresh_token().cloned(),
            id_token: RawIdToken::new(id_token),
            access_token_expires_at,
            issued_at: Some(now),
            resources: Vec::new(),
            dpop: false,
        },
        created_at: now,
        absolute_expires_at: now + absolute,
        handle: CsrfToken::new_random().secret().clone(),
        user_agent: None,
        ip: None,
        auth_time,
        acr: claims.auth_context_ref().map(|acr| acr.to_string()),
        dpop_key: None,
    })
}

/// 303 See Other, never cached (the Location may carry one-time values).
pub fn see_other(location: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
