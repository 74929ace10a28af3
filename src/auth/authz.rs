//! Authorization: who may do what, as extractors a handler names in its
//! signature (and one-line helpers for `#[server]` functions), so no handler
//! body re-checks a role or a scope.
//!
//! - [`RequireRole<R>`]: a signed-in session whose user has role `R`
//!   (401 JSON when anonymous, 403 JSON when the role is missing).
//! - [`server_fn_user`] / [`server_fn_role`]: the same inside a server function,
//!   answering 401/403 with an [`AppError`] JSON body.
//! - [`ApiAccess<S>`]: a caller of `/api/*` — the browser through its session,
//!   or a non-browser client with `Authorization: Bearer <JWT>` — holding scope
//!   `S` (RFC 6750 §3 errors with `WWW-Authenticate`).
//!
//! Every rejection is an [`ApiError`].
//!
//! Where roles come from: for sessions, the verified ID token at sign-in
//! (`OIDC_ROLES_CLAIM`), refreshed whenever a token refresh returns a new ID
//! token; for bearer callers, the verified access token's claims at the same
//! path. Never anything the browser sends.

use std::marker::PhantomData;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts, HeaderValue},
};
use serde_json::{Map, Value};

use super::state::AuthState;
use super::{
    api_error::{respond, ApiError},
    dpop,
    idp::JwtError,
    session::AuthSession,
    step_up,
    subject::SubjectKey,
    user::CurrentUser,
};
use crate::{server::config::AuthRequirement, types::AppError};

/// A role a guard can name: `RequireRole<Admin>`.
pub trait Role: Send + Sync + 'static {
    const NAME: &'static str;

    /// How recent, and of which class, the sign-in of someone acting in
    /// this role must be (step-up authentication). Any sign-in by default.
    fn requirement(_state: &AuthState) -> AuthRequirement {
        AuthRequirement::default()
    }
}

/// The `admin` role: `/admin`, everyone's notes, ending anyone's sessions.
/// Acting as an admin in the browser (`/admin`, its server functions,
/// `/api/admin/*`) needs a sign-in within `ADMIN_MAX_AUTH_AGE` (and of a
/// class in `ADMIN_ACR_VALUES`, when set).
pub struct Admin;
impl Role for Admin {
    const NAME: &'static str = crate::types::ADMIN_ROLE;

    fn requirement(state: &AuthState) -> AuthRequirement {
        state.config.admin_auth.clone()
    }
}

/// A signed-in user holding role `R`, whose sign-in meets the role's
/// [`Role::requirement`]. The rejection is 401 (anonymous, or a step-up is
/// needed: RFC 9470) or 403 JSON.
pub struct RequireRole<R: Role> {
    pub user: CurrentUser,
    role: PhantomData<R>,
}

impl<R: Role, St> FromRequestParts<St> for RequireRole<R>
where
    St: Send + Sync,
    AuthState: FromRef<St>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        check_role::<R>(&AuthState::from_ref(state), &user)?;
        Ok(Self {
            user,
            role: PhantomData,
        })
    }
}

/// The signed-in user of a server function's request, or a 401 `AppError`
/// (503 when the session store, or the IdP for an expired access token,
/// cannot be reached). Every server function that needs a user starts here:
/// "not signed in" is `Err(AppError::Unauthenticated)`, never `Ok(None)`.
pub async fn server_fn_user() -> Result<(AuthState, CurrentUser), AppError> {
    use leptos::prelude::expect_context;
    let state = expect_context::<AuthState>();
    let session = server_fn_session().await?;
    match session.signed_in(&state).await.map_err(ApiError::from)? {
        Some((record, idle_deadline)) => Ok((
            state,
            CurrentUser {
                session,
                record,
                idle_deadline,
            },
        )),
        None => Err(ApiError::NotSignedIn.into()),
    }
}

/// The session of a server function's request: the one the server function
/// route provided (see `server::build`), or, while a page renders on the
/// server, taken from the request's parts. (Taking it from the parts clones
/// them all again: callgrind counted 2.9k instructions of a 69k call.)
pub async fn server_fn_session() -> Result<AuthSession, AppError> {
    if let Some(session) = leptos::prelude::use_context::<AuthSession>() {
        return Ok(session);
    }
    leptos_axum::extract().await.map_err(|e| {
        respond(AppError::Failed {
            message: e.to_string(),
        })
    })
}

/// [`server_fn_user`] that also needs role `R` (403 `AppError` otherwise)
/// and a sign-in meeting the role's requirement (401 `StepUpRequired`).
pub async fn server_fn_role<R: Role>() -> Result<(AuthState, CurrentUser), AppError> {
    let (state, user) = server_fn_user().await?;
    check_role::<R>(&state, &user)?;
    Ok((state, user))
}

/// `user` holds role `R` (else 403), and signed in as recently, and at the
/// class, that `R` needs (else 401 asking for a step-up). The role comes
/// first: someone without it is told so, not asked to sign in again.
fn check_role<R: Role>(state: &AuthState, user: &CurrentUser) -> Result<(), ApiError> {
    if !user.record.roles.iter().any(|r| r == R::NAME) {
        tracing::info!(sub = %user.record.sub, needed = R::NAME, "forbidden: missing role");
        return Err(ApiError::Forbidden { role: R::NAME });
    }
    match step_up::unmet(&R::requirement(state), &user.record, state.clock.now()) {
        Some(step_up) => Err(step_up),
        None => Ok(()),
    }
}

/// An API scope a guard can name: `ApiAccess<NotesRead>`.
pub trait Scope: Send + Sync + 'static {
    const NAME: &'static str;
}

pub struct NotesRead;
impl Scope for NotesRead {
    const NAME: &'static str = "notes:read";
}

pub struct NotesWrite;
impl Scope for NotesWrite {
    const NAME: &'static str = "notes:write";
}

/// The scopes a signed-in browser session holds on our own API: the BFF is a
/// first-party client, so its users may use every API scope; what they may
/// touch is then decided by role and ownership.
const SESSION_SCOPES: &[&str] = &[NotesRead::NAME, NotesWrite::NAME];

/// Who is calling `/api/*`, after authentication.
#[derive(Clone, Debug)]
pub struct ApiCaller {
    /// Who owns what this caller creates: the caller's `sub` qualified by
    /// provider (two IdPs may issue the same `sub` to different people).
    pub owner: SubjectKey,
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub organizations: Vec<String>,
}

impl ApiCaller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// An authenticated API caller holding scope `S`.
pub struct ApiAccess<S: Scope> {
    pub caller: ApiCaller,
    scope: PhantomData<S>,
}

/// The header a request uses to name the organization it acts for.
pub const ORGANIZATION_HEADER: &str = "x-organization";

impl<S: Scope, St> FromRequestParts<St> for ApiAccess<S>
where
    St: Send + Sync,
    AuthState: FromRef<St>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let state = &AuthState::from_ref(state);
        let caller = api_caller(parts, state, S::NAME)
            .await
            .map_err(ApiError::at_bearer_resource)?;
        Ok(Self {
            caller,
            scope: PhantomData,
        })
    }
}

/// Who calls, holding `scope` and acting for the organization the request
/// names (if any).
async fn api_caller(
    parts: &mut Parts,
    state: &AuthState,
    scope: &'static str,
) -> Result<ApiCaller, ApiError> {
    let caller = match parts.headers.get(header::AUTHORIZATION) {
        Some(value) => bearer_caller(value, parts, state).await?,
        None => session_caller(parts, state).await?,
    };
    if !caller.scopes.iter().any(|s| s == scope) {
        tracing::info!(owner = %caller.owner, needed = scope, "forbidden: missing scope");
        return Err(ApiError::InsufficientScope { scope });
    }
    if let Some(named) = parts.headers.get(ORGANIZATION_HEADER) {
        let named = named.to_str().unwrap_or_default().trim().to_string();
        if named.is_empty() || !caller.organizations.contains(&named) {
            tracing::info!(owner = %caller.owner, organization = %named, "forbidden: organization mismatch");
            return Err(ApiError::OrganizationMismatch);
        }
    }
    Ok(caller)
}

/// The session's user as an API caller. Anonymous is `NotSignedIn` here;
/// [`ApiAccess`] turns it into the bearer challenge RFC 6750 §3 asks for.
async fn session_caller(parts: &mut Parts, state: &AuthState) -> Result<ApiCaller, ApiError> {
    let user = CurrentUser::from_request_parts(parts, state).await?;
    let record = user.record;
    Ok(ApiCaller {
        organizations: organizations(&record.id_token_claims),
        owner: record.subject_key(),
        name: record.name.clone(),
        roles: record.roles.clone(),
        scopes: SESSION_SCOPES.iter().map(|s| s.to_string()).collect(),
    })
}

/// A caller with `Authorization: Bearer <JWT>`, or `DPoP <JWT>` with a
/// `DPoP` proof of the key the token is bound to (RFC 9449 §7).
async fn bearer_caller(
    value: &HeaderValue,
    parts: &Parts,
    state: &AuthState,
) -> Result<ApiCaller, ApiError> {
    let invalid_token = |description| ApiError::InvalidToken { description };
    let (dpop, token) = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            let dpop = scheme.eq_ignore_ascii_case("dpop");
            (dpop || scheme.eq_ignore_ascii_case("bearer")).then(|| (dpop, token.trim()))
        })
        .filter(|(_, t)| !t.is_empty())
        .ok_or_else(|| {
            invalid_token("the Authorization header is not `Bearer <token>` or `DPoP <token>`")
        })?;
    let Some(oidc) = state.idps.for_jwt(token) else {
        return Err(invalid_token("the access token is invalid or expired"));
    };
    let claims = oidc.verify_access_token(token).await.map_err(|e| match e {
        JwtError::Invalid(why) => {
            tracing::info!(%why, "bearer token rejected");
            invalid_token("the access token is invalid or expired")
        }
        JwtError::Idp(e) => {
            tracing::warn!(error = %e, "cannot verify bearer tokens: IdP keys unavailable");
            ApiError::IdpUnreachable
        }
    })?;
    // RFC 9449 §7.1–7.2: a token bound to a key (`cnf.jkt`) counts only
    // with a proof of that key, and never as a plain bearer token (no
    // downgrade); a DPoP proof for an unbound token is refused too.
    let bound_to = claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str);
    match (dpop, bound_to) {
        (false, None) => {}
        (false, Some(_)) => {
            return Err(invalid_token(
                "the access token is DPoP-bound: send it as `DPoP` with a proof",
            ))
        }
        (true, None) => return Err(invalid_token("the access token is not DPoP-bound")),
        (true, Some(jkt)) => check_dpop_proof(parts, state, token, jkt).await?,
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    // Keycloak marks its token kinds in the payload: an ID token ("ID") or a
    // refresh token ("Refresh") is never an access token, whatever its `aud`.
    if text("typ").is_some_and(|t| !t.eq_ignore_ascii_case("Bearer")) {
        return Err(invalid_token("the token is not an access token"));
    }
    let Some(sub) = text("sub").or_else(|| text("client_id")) else {
        return Err(invalid_token("the access token names no subject"));
    };
    Ok(ApiCaller {
        name: text("name")
            .or_else(|| text("preferred_username"))
            .or_else(|| text("client_id"))
            .unwrap_or_else(|| sub.clone()),
        roles: oidc.config().roles_claim.roles(&claims),
        scopes: text("scope")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        organizations: organizations(&claims),
        owner: oidc.owner_key(&sub),
    })
}

/// RFC 9449 §4.3 and §7.1: exactly one `DPoP` header, a valid proof for
/// this request and this token, made with the key the token names, and a
/// `jti` never seen before (by any instance, on Redis).
async fn check_dpop_proof(
    parts: &Parts,
    state: &AuthState,
    token: &str,
    jkt: &str,
) -> Result<(), ApiError> {
    let refuse = |description| ApiError::InvalidDpopProof { description };
    let mut proofs = parts.headers.get_all("dpop").iter();
    let (Some(proof), None) = (proofs.next(), proofs.next()) else {
        return Err(refuse("send exactly one DPoP proof"));
    };
    let proof = proof
        .to_str()
        .map_err(|_| refuse("the DPoP proof is not a JWT"))?;
    // The URL the caller used: the app's public origin and this path.
    let url = url::Url::parse(&state.config.base_url.join(parts.uri.path()))
        .map_err(|_| refuse("the request URL cannot be checked"))?;
    let now = state.clock.unix_now();
    let verified =
        dpop::verify_proof(proof, parts.method.as_str(), &url, token, now).map_err(|why| {
            tracing::info!(%why, "DPoP proof refused");
            refuse(why)
        })?;
    if verified.jkt != jkt {
        return Err(refuse(
            "the DPoP proof's key is not the one the token is bound to",
        ));
    }
    let until = verified.iat.max(now) + dpop::PROOF_WINDOW_SECS;
    match state
        .store
        .first_use_of_jti(&format!("dpop:{jkt}"), &verified.jti, until)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(refuse("the DPoP proof was used before")),
        Err(e) => {
            tracing::warn!(error = %e, "DPoP replay cache unavailable");
            Err(ApiError::SessionStoreUnavailable)
        }
    }
}

/// The organizations a token is for: Logto's `organization_id` (organization
/// tokens) and `organizations` (ID tokens), Keycloak's `organization` (a list
/// of aliases, or an object keyed by alias when attributes are mapped).
pub fn organizations(claims: &Map<String, Value>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut add = |v: &Value| match v {
        Value::String(s) => found.push(s.clone()),
        Value::Array(items) => {
            found.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
        }
        Value::Object(map) => found.extend(map.keys().cloned()),
        _ => {}
    };
    for name in ["organization_id", "organizations", "organization"] {
        if let Some(v) = claims.get(name) {
            add(v);
        }
    }
    found.retain(|o| !o.is_empty());
    found.sort();
    found.dedup();
    found
}

/// The 403 JSON for an API caller lacking role `R` (e.g. listing everyone's
/// notes), or `None` when the caller has it.
pub fn missing_role<R: Role>(caller: &ApiCaller) -> Option<ApiError> {
    if caller.has_role(R::NAME) {
        return None;
    }
    tracing::info!(owner = %caller.owner, needed = R::NAME, "forbidden: missing role");
    Some(ApiError::Forbidden { role: R::NAME })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn organizations_from_logto_and_keycloak_shapes() {
        let claims = json!({
            "organization_id": "org-1",
            "organizations": ["org-2", "org-1"],
            "organization": {"acme": {"id": "x"}},
        });
        assert_eq!(
            organizations(claims.as_object().unwrap()),
            ["acme", "org-1", "org-2"]
        );
        let keycloak = json!({"organization": ["acme", ""]});
        assert_eq!(organizations(keycloak.as_object().unwrap()), ["acme"]);
        assert!(organizations(json!({"organization": 7}).as_object().unwrap()).is_empty());
    }
}
