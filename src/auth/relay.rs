//! Token relay (the BFF pattern's "remote APIs"): `/api/remote/<name>/<rest>`
//! is forwarded to an allow-listed upstream (`API_REMOTES`) with the user's
//! current access token — refreshed first if it is about to expire — in
//! `Authorization`. The browser's cookies, its anti-forgery header, its own
//! `Authorization` and hop-by-hop headers never leave the BFF (IETF
//! browser-based-apps, BFF section: the BFF proxies requests "with the access
//! token attached"; the browser never sees it).
//!
//! A remote with a resource indicator (`aud=` in `API_REMOTES`, RFC 8707) gets
//! an access token issued for it alone, never the session's own token nor
//! another API's (RFC 9700 §2.3: audience-restricted tokens), so one API
//! cannot replay what it receives at another.
//!
//! When the upstream answers 401, the token is refreshed once and the request
//! retried once; a second 401 means the session's grant no longer works, so the
//! session ends (401 `session_ended`) rather than staying half-alive — except
//! for a resource's token, which the IdP has just issued: then the API is what
//! refuses, and the answer is 502 `upstream_token_unavailable`.

use crate::server::telemetry::{metrics, traces};
use axum::{
    body::{to_bytes, Body, Bytes},
    extract::{Path, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};

use tracing::Instrument;
use url::Url;

use super::state::AuthState;
use super::{
    api_error::ApiError,
    dpop::asks_for_nonce,
    refresh::{refresh_if_needed, refresh_rejected, resource_token, Credential, RefreshError},
    user::CurrentUser,
};
use crate::server::config::Remote;

/// Request bodies relayed upstream are as small as any other (the app-wide limit).
const MAX_BODY: usize = 64 * 1024;

/// The request headers an upstream gets from the browser: what describes
/// the content and its negotiation, conditional and range requests, and a
/// request id. Everything else stays behind — an allow-list, not a deny-list,
/// so the browser's credentials, our anti-forgery header, hop-by-hop headers
/// and whatever an upstream or a proxy in front of it might obey
/// (`X-HTTP-Method-Override`, `X-Original-URL`, `Forwarded`, `X-Forwarded-*`)
/// never leave the BFF. `Host` and `Content-Length` are set by the client.
const FORWARDED: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "content-language",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "x-request-id",
];

/// Response headers the browser must not get from an upstream: hop-by-hop
/// ones, and cookies (an upstream must not set cookies on the app's origin).
const NOT_RETURNED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "set-cookie",
    "set-cookie2",
];

/// `ANY /api/remote/{name}/{*rest}`.
pub async fn relay(
    State(state): State<AuthState>,
    Path((name, _rest)): Path<(String, String)>,
    user: CurrentUser,
    request: Request,
) -> Result<Response, ApiError> {
    forward(state, &name, user, request).await
}

/// `ANY /api/remote/{name}/` (the upstream's root).
pub async fn relay_root(
    State(state): State<AuthState>,
    Path(name): Path<String>,
    user: CurrentUser,
    request: Request,
) -> Result<Response, ApiError> {
    forward(state, &name, user, request).await
}

async fn forward(
    state: AuthState,
    name: &str,
    user: CurrentUser,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(remote) = state.config.remotes.iter().find(|r| r.name == name) else {
        return Err(ApiError::NotFound("No such remote API."));
    };
    // Counted by the configured name only (a name from the path is the
    // caller's to choose, and would make a label per guess).
    let answer = forward_to(&state, remote, user, request).await;
    let status = match &answer {
        Ok(response) => response.status(),
        Err(error) => error.status(),
    };
    metrics::relay(&remote.name, status.as_u16());
    answer
}

async fn forward_to(
    state: &AuthState,
    remote: &Remote,
    user: CurrentUser,
    request: Request,
) -> Result<Response, ApiError> {
    if !remote.methods.contains(request.method()) {
        return Err(ApiError::MethodNotAllowed {
            allow: remote.methods.clone(),
        });
    }
    let Some(url) = upstream_url(remote, request.uri()) else {
        return Err(ApiError::InvalidPath);
    };
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| ApiError::unreadable_body(&e, MAX_BODY))?;
    let headers = forwarded_headers(&parts.headers);

    let credential = match &remote.resource {
        Some(resource) => resource_token(state, &user.session, &user.record, resource, None).await,
        None => refresh_if_needed(state, &user.session, &user.record).await,
    }
    .map_err(refresh_failed)?;
    let call = Upstream {
        state,
        remote: &remote.name,
        method: &parts.method,
        url: &url,
        headers: &headers,
        body: &body,
    };
    let mut upstream = call
        .send(&credential)
        .await
        .map_err(|e| unreachable(&remote.name, e))?;
    if upstream.status() == StatusCode::UNAUTHORIZED {
        tracing::info!(remote = %remote.name, "upstream refused the access token; refreshing once");
        let rejected = &credential.token;
        let fresh = match &remote.resource {
            Some(resource) => {
                resource_token(state, &user.session, &user.record, resource, Some(rejected)).await
            }
            None => refresh_rejected(state, &user.session, &user.record, rejected).await,
        }
        .map_err(refresh_failed)?;
        upstream = call
            .send(&fresh)
            .await
            .map_err(|e| unreachable(&remote.name, e))?;
        if upstream.status() == StatusCode::UNAUTHORIZED && remote.resource.is_some() {
            // The IdP has just issued this token for this API: the grant
            // works, so the API (its audience or scopes) is what refuses.
            tracing::warn!(remote = %remote.name, "upstream refused a fresh token issued for its resource");
            return Err(ApiError::UpstreamTokenUnavailable);
        }
        if upstream.status() == StatusCode::UNAUTHORIZED {
            tracing::warn!(remote = %remote.name, "upstream refused a fresh access token; ending the session");
            let _ = user.session.sign_out().await;
            return Err(ApiError::SessionEnded);
        }
    }
    Ok(respond(upstream))
}

/// One relayed request, as it goes upstream.
struct Upstream<'a> {
    state: &'a AuthState,
    /// Its `API_REMOTES` name.
    remote: &'a str,
    method: &'a Method,
    url: &'a Url,
    headers: &'a HeaderMap,
    body: &'a Bytes,
}

impl Upstream<'_> {
    /// Sends it with `credential`: as a bearer token, or a DPoP-bound token
    /// with a fresh proof for this method and URL (RFC 9449 §7.1), once more
    /// with the nonce the API asks for (§9). The API's latest nonce is kept
    /// for the next call to the same URL. In a span of its own (when traces
    /// are on), whose `traceparent` the upstream gets.
    async fn send(&self, credential: &Credential) -> reqwest::Result<reqwest::Response> {
        let span = traces::relay_span(self.remote, self.method);
        let answer = self.send_in_span(credential).instrument(span.clone()).await;
        traces::answered(&span, answer.as_ref().ok().map(|r| r.status().as_u16()));
        answer
    }

    async fn send_in_span(&self, credential: &Credential) -> reqwest::Result<reqwest::Response> {
        let token = credential.token.secret();
        let request = || {
            let request = self
                .state
                .relay_http
                .request(self.method.clone(), self.url.clone())
                .headers(self.headers.clone())
                .body(self.body.clone());
            traces::propagated(request)
        };
        let Some(key) = &credential.dpop else {
            return request().bearer_auth(token).send().await;
        };
        let mut target = self.url.clone();
        target.set_query(None);
        let nonces = &self.state.relay_nonces;
        let mut nonce = nonces.get(target.as_str());
        let mut asked = false;
        loop {
            let request = request();
            let now = self.state.clock.unix_now();
            let proof = key.proof(
                self.method.as_str(),
                self.url,
                Some(token),
                nonce.as_deref(),
                now,
            );
            let response = request
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("DPoP", proof)
                .send()
                .await?;
            let fresh = response
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if let Some(fresh) = &fresh {
                nonces.set(target.as_str(), fresh);
            }
            if !asked && asks_for_nonce(response.status().as_u16(), response.headers(), b"") {
                asked = true;
                nonce = fresh;
                continue;
            }
            return Ok(response);
        }
    }
}

/// The upstream URL for a request to `/api/remote/<name>/<rest>?<query>`, or
/// `None` when the (normalised) result would leave the remote's prefix, e.g.
/// through `..` or `%2e%2e` segments, or when the path carries a
/// percent-encoded `/`, `\` or `.`: an upstream (or a proxy before it) that
/// decodes them would see other segments than the ones checked here.
fn upstream_url(remote: &Remote, uri: &axum::http::Uri) -> Option<Url> {
    let prefix = format!("/api/remote/{}/", remote.name);
    let rest = uri.path().strip_prefix(&prefix)?;
    let lower = rest.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e"].iter().any(|e| lower.contains(e)) {
        return None;
    }
    let mut raw = format!("{}{}", remote.upstream, rest);
    if let Some(query) = uri.query() {
        raw.push('?');
        raw.push_str(query);
    }
    let url = Url::parse(&raw).ok()?;
    let inside = url.origin() == remote.upstream.origin()
        && url.path().starts_with(remote.upstream.path())
        && !url.path().contains('\\');
    inside.then_some(url)
}

fn forwarded_headers(from: &HeaderMap) -> HeaderMap {
    // Headers the browser listed in `Connection` are hop-by-hop, even allowed ones.
    let listed: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        if FORWARDED.contains(&n) && !listed.iter().any(|l| l == n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn respond(upstream: reqwest::Response) -> Response {
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !NOT_RETURNED.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    // Relayed answers are the user's data: never cached by the browser or a proxy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let body = Body::from_stream(upstream.bytes_stream());
    let mut response = (status, body).into_response();
    response.headers_mut().extend(headers);
    response
}

fn refresh_failed(e: RefreshError) -> ApiError {
    match e {
        RefreshError::SessionEnded => ApiError::SessionEnded,
        RefreshError::IdpUnavailable(detail) => {
            tracing::warn!(%detail, "token refresh unavailable for relay");
            ApiError::IdpUnreachable
        }
        RefreshError::Refused(detail) => {
            tracing::warn!(%detail, "no access token for the remote's resource");
            ApiError::UpstreamTokenUnavailable
        }
    }
}

fn unreachable(remote: &str, e: reqwest::Error) -> ApiError {
    tracing::warn!(%remote, error = %e, "remote API unreachable");
    ApiError::UpstreamUnreachable
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, Method};

    fn remote() -> Remote {
        Remote {
            name: "reports".into(),
            upstream: Url::parse("http://reports.internal/v1/").unwrap(),
            methods: vec![Method::GET],
            resource: None,
        }
    }

    fn url(path: &str) -> Option<String> {
        upstream_url(&remote(), &path.parse().unwrap()).map(|u| u.to_string())
    }

    #[test]
    fn paths_map_under_the_upstream_prefix() {
        assert_eq!(
            url("/api/remote/reports/daily?x=1").as_deref(),
            Some("http://reports.internal/v1/daily?x=1")
        );
        assert_eq!(
            url("/api/remote/reports/").as_deref(),
            Some("http://reports.internal/v1/")
        );
    }

    #[test]
    fn paths_cannot_escape_the_prefix() {
        for path in [
            "/api/remote/reports/../admin",
            "/api/remote/reports/%2e%2e/admin",
            "/api/remote/reports/.%2E/admin",
            "/api/remote/reports/a/../../x",
            "/api/remote/other/x",
            "/api/remote/reports/a%2Fb",
            "/api/remote/reports/a%2fb",
            "/api/remote/reports/a%5Cb",
            "/api/remote/reports/%2E",
            "/api/remote/reports/a%2e",
        ] {
            assert_eq!(url(path), None, "{path}");
        }
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("cookie", "gatehouse_session=abc"),
            ("authorization", "Bearer browser"),
            ("x-csrf", "1"),
            ("connection", "keep-alive, x-secret, if-match"),
            ("x-secret", "s"),
            ("x-http-method-override", "DELETE"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("forwarded", "for=1.2.3.4;host=evil"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "https"),
            ("if-match", "\"listed in Connection\""),
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("if-none-match", "\"v1\""),
            ("range", "bytes=0-99"),
            ("x-request-id", "r-1"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = forwarded_headers(&h);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "content-type",
                "if-none-match",
                "range",
                "x-request-id"
            ]
        );
    }
}
