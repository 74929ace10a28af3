//! The start-up self-check on the configuration alone, and keeping secrets
//! out of what the operator sees.

use url::Url;

use super::{
    idp::{provider_prefix, IdpConfig, DEFAULT_PROVIDER, DEV_CLIENT_SECRET},
    values::{is_loopback_host, BaseUrl, Remote},
    ConfigError,
};

/// `raw` with the password of a URL (in its userinfo or a `password=`
/// query parameter) replaced by `***`; as is, if it carries none.
pub fn without_password(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            let mut hidden = false;
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
                hidden = true;
            }
            // libpq and sqlx also take it as `?password=`.
            if url.query_pairs().any(|(k, _)| k == "password") {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
                hidden = true;
            }
            if hidden {
                url.to_string()
            } else {
                raw.to_string()
            }
        }
        // Not parseable: hide whatever sits between "://" and the last "@",
        // and everything after a `password=`.
        Err(_) => {
            let raw = match raw.find("password=") {
                Some(at) => format!("{}password=***", &raw[..at]),
                None => raw.to_string(),
            };
            match (raw.find("://"), raw.rfind('@')) {
                (Some(start), Some(end)) if end > start => {
                    format!("{}***{}", &raw[..start + 3], &raw[end..])
                }
                _ => raw,
            }
        }
    }
}

/// The start-up self-check on the configuration alone (OWASP ASVS 5.0 §3.3:
/// cookies only over TLS; no shared default credentials). Outside loopback,
/// plain http would send the session cookie in clear text and the dev client
/// secret is known to everyone: both refuse to start, unless
/// `GATEHOUSE_ALLOW_INSECURE=1` turns them into warnings. (A session cookie
/// without `Secure` on https cannot happen: `Secure` and the `__Host-` prefix
/// follow from an https `APP_BASE_URL` by construction.)
pub(super) fn refuse_insecure(
    base_url: &BaseUrl,
    oidc: &IdpConfig,
    extra: &[IdpConfig],
    remotes: &[Remote],
    allow_insecure: bool,
) -> Result<(), ConfigError> {
    let mut problems: Vec<ConfigError> = Vec::new();
    // Tokens and codes travel on these: the issuer (code exchange, refresh),
    // the back-channel base (the same, inside a cluster) and the relayed APIs
    // (access tokens). Plain http is for loopback only.
    let mut clear_text = |var: String, url: &Url| {
        if url.scheme() == "http" && !is_loopback_host(url) {
            problems.push(ConfigError {
                var,
                value: url.as_str().to_string(),
                expected: "https outside localhost (tokens must not travel in clear text; \
                           GATEHOUSE_ALLOW_INSECURE=1 overrides)"
                    .into(),
            });
        }
    };
    for p in std::iter::once(oidc).chain(extra) {
        let prefix = provider_prefix((p.name != DEFAULT_PROVIDER).then_some(p.name.as_str()));
        clear_text(format!("{prefix}ISSUER_URL"), p.issuer.url());
        if let Some(base) = &p.backchannel_base_url {
            clear_text(format!("{prefix}BACKCHANNEL_BASE_URL"), &base.url);
        }
    }
    for remote in remotes {
        clear_text(format!("API_REMOTES ({})", remote.name), &remote.upstream);
    }
    if !base_url.is_https() && !base_url.is_loopback() {
        problems.push(ConfigError {
            var: "APP_BASE_URL".into(),
            value: base_url.origin().to_string(),
            expected: "https outside localhost (the session cookie must not travel in clear text; \
                       GATEHOUSE_ALLOW_INSECURE=1 overrides)"
                .into(),
        });
    }
    if !base_url.is_loopback() {
        for p in std::iter::once(oidc).chain(extra) {
            if p.client_secret.secret() == DEV_CLIENT_SECRET {
                problems.push(ConfigError {
                    var: format!(
                        "{}CLIENT_SECRET",
                        provider_prefix((p.name != DEFAULT_PROVIDER).then_some(p.name.as_str()),)
                    ),
                    value: "(the development default)".into(),
                    expected: "the client's real secret outside localhost \
                               (GATEHOUSE_ALLOW_INSECURE=1 overrides)"
                        .into(),
                });
            }
        }
    }
    if allow_insecure {
        for problem in &problems {
            tracing::warn!("GATEHOUSE_ALLOW_INSECURE=1: starting anyway: {problem}");
        }
        return Ok(());
    }
    problems.into_iter().next().map_or(Ok(()), Err)
}
