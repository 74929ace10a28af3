//! The HTTP client for server-to-IdP calls (discovery, JWKS, token, userinfo).
//!
//! On a split network (docker compose, Kubernetes) the browser reaches the IdP
//! at its public URL while the BFF must use an internal one
//! (`OIDC_BACKCHANNEL_BASE_URL`, e.g. `http://keycloak:8080`). Every request
//! this client sends to the issuer's public origin goes to the internal origin
//! instead, path and query unchanged. Nothing else changes: the issuer the
//! discovery document names and the tokens' `iss` must still equal the public
//! `OIDC_ISSUER_URL` exactly, and the URLs the browser is sent to (authorize,
//! end-session) stay public — if the IdP builds its discovery document from
//! the request's host and names them on the internal origin, [`IdpHttp::public`]
//! maps them back.

use openidconnect::{AsyncHttpClient, HttpRequest, IssuerUrl};
use url::Url;

use crate::server::{config::BaseUrl, telemetry::traces};

#[derive(Clone, Debug)]
pub struct IdpHttp {
    client: reqwest::Client,
    /// (the issuer's public origin, the internal origin to use instead)
    rewrite: Option<(String, String)>,
}

impl IdpHttp {
    pub fn new(client: reqwest::Client, issuer: &IssuerUrl, backchannel: Option<&BaseUrl>) -> Self {
        let rewrite = backchannel.map(|internal| {
            let public = issuer.url().origin().ascii_serialization();
            (public, internal.origin().to_string())
        });
        Self { client, rewrite }
    }

    /// `url` with the issuer's public origin replaced by the internal one; any
    /// other URL (another host, a relative or malformed one) unchanged.
    pub fn route(&self, url: &str) -> String {
        match &self.rewrite {
            Some((public, internal)) => swap_origin(url, public, internal),
            None => url.to_string(),
        }
    }

    /// The reverse, for URLs a browser will be sent to.
    pub fn public(&self, url: &str) -> String {
        match &self.rewrite {
            Some((public, internal)) => swap_origin(url, internal, public),
            None => url.to_string(),
        }
    }

    /// A GET to the IdP, carrying the current span's `traceparent` when
    /// traces are on (so build it inside the call's span).
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        traces::propagated(self.client.get(self.route(url)))
    }

    /// A POST to the IdP, as [`IdpHttp::get`].
    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        traces::propagated(self.client.post(self.route(url)))
    }
}

fn swap_origin(url: &str, from: &str, to: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) if parsed.origin().ascii_serialization() == from => {
            let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{to}{}{query}", parsed.path())
        }
        _ => url.to_string(),
    }
}

impl<'c> AsyncHttpClient<'c> for IdpHttp {
    type Error = <reqwest::Client as AsyncHttpClient<'c>>::Error;
    type Future = <reqwest::Client as AsyncHttpClient<'c>>::Future;

    /// Sends a request `openidconnect` built, with the current span's
    /// `traceparent` when traces are on.
    fn call(&'c self, mut request: HttpRequest) -> Self::Future {
        traces::inject(request.headers_mut());
        if self.rewrite.is_some() {
            let routed = self.route(&request.uri().to_string());
            if let Ok(uri) = routed.parse() {
                *request.uri_mut() = uri;
            }
        }
        self.client.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(issuer: &str, internal: Option<&str>) -> IdpHttp {
        let base = internal.map(|b| BaseUrl::parse(b).unwrap());
        IdpHttp::new(
            reqwest::Client::new(),
            &IssuerUrl::new(issuer.into()).unwrap(),
            base.as_ref(),
        )
    }

    #[test]
    fn only_the_issuers_origin_is_rerouted() {
        let h = http(
            "http://localhost:8080/realms/demo",
            Some("http://keycloak:8080"),
        );
        assert_eq!(
            h.route("http://localhost:8080/realms/demo/.well-known/openid-configuration"),
            "http://keycloak:8080/realms/demo/.well-known/openid-configuration"
        );
        assert_eq!(
            h.route("http://localhost:8080/realms/demo/protocol/openid-connect/certs?x=1"),
            "http://keycloak:8080/realms/demo/protocol/openid-connect/certs?x=1"
        );
        // An endpoint the IdP already names internally, another host, another
        // port or scheme of the same host: untouched.
        assert_eq!(
            h.public("http://keycloak:8080/realms/demo/protocol/openid-connect/auth"),
            "http://localhost:8080/realms/demo/protocol/openid-connect/auth"
        );
        for other in [
            "http://keycloak:8080/realms/demo/token",
            "https://localhost:8080/realms/demo/token",
            "http://localhost:8081/realms/demo/token",
            "http://localhost.evil:8080/realms/demo/token",
            "/relative",
        ] {
            assert_eq!(h.route(other), other);
        }
    }

    #[test]
    fn default_ports_compare_equal_and_no_base_means_no_change() {
        let h = http("https://idp.example.com/oidc", Some("http://10.0.0.5:8443"));
        assert_eq!(
            h.route("https://idp.example.com:443/oidc/token"),
            "http://10.0.0.5:8443/oidc/token"
        );
        let plain = http("https://idp.example.com/oidc", None);
        assert_eq!(
            plain.route("https://idp.example.com/oidc/token"),
            "https://idp.example.com/oidc/token"
        );
    }
}
