//! Calls to the IdP that carry a DPoP proof (RFC 9449): the token endpoint
//! (code and refresh grants, §5) and userinfo with a DPoP-bound token (§7,
//! `Authorization: DPoP` and a proof with `ath`). A server that wants a
//! nonce answers `use_dpop_nonce` with a `DPoP-Nonce` header; the call is
//! made once more with it, and the nonce is kept for the next call there.

use crate::server::telemetry::{metrics, traces};
use std::{future::Future, pin::Pin};

use openidconnect::{http, AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};
use tracing::Instrument;

use super::Idp;
use crate::auth::dpop::{asks_for_nonce, DpopKey};

/// `openidconnect`'s HTTP client for one call: plain, or with a DPoP proof
/// of the session's key (and its access token presented as `DPoP`, for
/// userinfo).
pub(super) struct Sender<'a> {
    idp: &'a Idp,
    /// Which endpoint, for the metrics (`token`, `userinfo`).
    endpoint: &'static str,
    dpop: Option<&'a DpopKey>,
    access_token: Option<&'a str>,
}

impl<'c> AsyncHttpClient<'c> for Sender<'_> {
    type Error = HttpClientError<reqwest::Error>;
    // Boxed as `Send`: the request futures of every handler must be.
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let started = std::time::Instant::now();
        // The request is built in the call's span, so it carries its
        // `traceparent` (`IdpHttp::call`).
        let span = traces::idp_span(&self.idp.config().name, self.endpoint);
        let call: Self::Future = span.in_scope(|| -> Self::Future {
            match self.dpop {
                Some(key) => Box::pin(self.idp.send_with_dpop(request, key, self.access_token)),
                None => Box::pin(self.idp.http.call(request)),
            }
        });
        Box::pin(async move {
            let answer = call.instrument(span.clone()).await;
            traces::answered(&span, answer.as_ref().ok().map(|r| r.status().as_u16()));
            metrics::idp_call(&self.idp.config().name, self.endpoint, started.elapsed());
            answer
        })
    }
}

impl Idp {
    /// The client for a call with the session's DPoP key, if it has one.
    pub(super) fn sender<'a>(
        &'a self,
        endpoint: &'static str,
        dpop: Option<&'a DpopKey>,
        access_token: Option<&'a str>,
    ) -> Sender<'a> {
        Sender {
            idp: self,
            endpoint,
            dpop,
            access_token,
        }
    }

    /// Sends `request` (built by `openidconnect`) with a proof of `key`,
    /// presenting `access_token` as `DPoP` when given (replacing the
    /// `Bearer` the request carries).
    pub(super) async fn send_with_dpop(
        &self,
        request: HttpRequest,
        key: &DpopKey,
        access_token: Option<&str>,
    ) -> Result<HttpResponse, HttpClientError<reqwest::Error>> {
        let (parts, body) = request.into_parts();
        // `htu` is the endpoint as the IdP names it (its public URL, before
        // any back-channel rerouting), without query or fragment.
        let htu = url::Url::parse(&parts.uri.to_string()).map_err(|e| {
            HttpClientError::Other(format!("a DPoP proof needs an absolute URL: {e}"))
        })?;
        let nonce_key = {
            let mut u = htu.clone();
            u.set_query(None);
            u.to_string()
        };
        let mut response = None;
        for _ in 0..2 {
            let nonce = self.dpop_nonces.get(&nonce_key);
            let proof = key.proof(
                parts.method.as_str(),
                &htu,
                access_token,
                nonce.as_deref(),
                self.clock.unix_now(),
            );
            let mut builder = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone());
            for (name, value) in &parts.headers {
                if access_token.is_some() && name == http::header::AUTHORIZATION {
                    continue;
                }
                builder = builder.header(name, value);
            }
            if let Some(token) = access_token {
                builder = builder.header(http::header::AUTHORIZATION, format!("DPoP {token}"));
            }
            let request = builder
                .header("DPoP", proof)
                .body(body.clone())
                .map_err(|e| HttpClientError::Other(e.to_string()))?;
            let answer = self.http.call(request).await?;
            if let Some(fresh) = answer
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
            {
                self.dpop_nonces.set(&nonce_key, fresh);
            }
            let again = asks_for_nonce(answer.status().as_u16(), answer.headers(), answer.body());
            response = Some(answer);
            if !again {
                break;
            }
        }
        Ok(response.expect("at least one attempt"))
    }
}
