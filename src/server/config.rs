//! Typed configuration, parsed once at start-up from the environment (and an
//! optional `.env` file). Every value is parsed into a type that can only hold a
//! valid value, so the rest of the code never re-checks it; a bad value stops the
//! program with one line naming the variable and what it expects.

use std::{net::SocketAddr, time::Duration};

use openidconnect::{ClientId, ClientSecret, IssuerUrl, Scope};
use url::Url;

use crate::auth::claims::ClaimPath;

/// What went wrong with one variable. `Display` is the one line the operator sees.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}={value:?} is invalid: expected {expected}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub expected: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The public origin of the app, e.g. `http://localhost:3000` (no path, no trailing slash).
    pub base_url: BaseUrl,
    pub site_addr: SocketAddr,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub api_audience: String,
    /// The app's own data (notes, users seen): a sqlx SQLite URL.
    pub app_database: String,
    /// Downstream APIs the BFF relays to with the user's access token.
    pub remotes: Vec<Remote>,
}

/// One allow-listed downstream API: `/api/remote/<name>/<rest>` is relayed to
/// `<upstream><rest>` for the listed methods only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    /// Always ends with `/`.
    pub upstream: Url,
    pub methods: Vec<axum::http::Method>,
}

#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    pub client_secret: ClientSecret,
    pub scopes: Vec<Scope>,
    pub roles_claim: ClaimPath,
    /// Server-to-IdP base URL for split networks (the browser keeps the public URLs).
    pub backchannel_base_url: Option<Url>,
    pub refresh_leeway: Duration,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub store: StoreUrl,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Memory,
    /// A sqlx SQLite URL, e.g. `sqlite://data/sessions.db`.
    Sqlite(String),
    Redis(Url),
}

/// The app's public origin. Parsing guarantees an http(s) URL with a host and no
/// path, query or fragment, so `origin()` and `join()` are always well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    url: Url,
    origin: String,
}

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw.trim_end_matches('/')).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("scheme must be http or https".into());
        }
        if url.host_str().is_none() {
            return Err("URL has no host".into());
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("no path, query or fragment allowed".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("no credentials allowed in the URL".into());
        }
        let origin = url.origin().ascii_serialization();
        Ok(Self { url, origin })
    }

    /// `scheme://host[:port]`, exactly as browsers send it in the `Origin` header.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// An absolute URL for a path on this origin (`path` must start with `/`).
    pub fn join(&self, path: &str) -> String {
        debug_assert!(path.starts_with('/'));
        format!("{}{}", self.origin, path)
    }
}

/// A source of raw values; production reads the process environment, tests a map.
pub trait Lookup {
    fn get(&self, key: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key)
    }
}

struct Reader<'a, L: Lookup>(&'a L);

impl<L: Lookup> Reader<'_, L> {
    fn raw(&self, var: &'static str, default: &str) -> String {
        match self.0.get(var) {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => default.to_string(),
        }
    }

    fn optional(&self, var: &'static str) -> Option<String> {
        self.0
            .get(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T>(
        &self,
        var: &'static str,
        default: &str,
        expected: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.raw(var, default);
        f(&value).map_err(|why| ConfigError {
            var,
            value: value.clone(),
            expected: format!("{expected} ({why})"),
        })
    }
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

impl Config {
    /// Reads the real environment, after loading `.env` if there is one.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is reported by dotenvy as a var error.
        let _ = dotenvy::dotenv();
        Self::from_lookup(&|k: &str| std::env::var(k).ok())
    }

    pub fn from_lookup(env: &impl Lookup) -> Result<Self, ConfigError> {
        let r = Reader(env);
        let base_url = r.parse(
            "APP_BASE_URL",
            "http://localhost:3000",
            "an http(s) origin such as https://app.example.com",
            BaseUrl::parse,
        )?;
        let site_addr = r.parse(
            "LEPTOS_SITE_ADDR",
            "127.0.0.1:3000",
            "a socket address such as 127.0.0.1:3000",
            |v| v.parse::<SocketAddr>().map_err(|e| e.to_string()),
        )?;
        let issuer = r.parse(
            "OIDC_ISSUER_URL",
            "http://localhost:8080/realms/demo",
            "the IdP's issuer URL, exactly as its discovery document states it",
            |v| {
                let url = Url::parse(v).map_err(|e| e.to_string())?;
                if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
                    return Err("an http(s) URL without query".into());
                }
                IssuerUrl::new(v.to_string()).map_err(|e| e.to_string())
            },
        )?;
        let client_id = r.parse("OIDC_CLIENT_ID", "gatehouse", "a client id", |v| {
            Ok(ClientId::new(v.to_string()))
        })?;
        let client_secret = ClientSecret::new(r.raw("OIDC_CLIENT_SECRET", "gatehouse-dev-secret"));
        let scopes = r.parse(
            "OIDC_SCOPES",
            "openid profile email offline_access",
            "space-separated scopes including openid",
            parse_scopes,
        )?;
        let roles_claim = r.parse(
            "OIDC_ROLES_CLAIM",
            "realm_access.roles",
            "a dotted claim path such as realm_access.roles or roles",
            ClaimPath::parse,
        )?;
        let backchannel_base_url = match r.optional("OIDC_BACKCHANNEL_BASE_URL") {
            None => None,
            Some(v) => Some(r.parse(
                "OIDC_BACKCHANNEL_BASE_URL",
                &v,
                "an http(s) base URL such as http://keycloak:8080",
                |v| {
                    let url = Url::parse(v).map_err(|e| e.to_string())?;
                    if matches!(url.scheme(), "http" | "https") {
                        Ok(url)
                    } else {
                        Err("scheme must be http or https".into())
                    }
                },
            )?),
        };
        let refresh_leeway = r.parse(
            "OIDC_REFRESH_LEEWAY",
            "30s",
            "a duration such as 30s",
            parse_duration,
        )?;
        let store = r.parse(
            "SESSION_STORE",
            "sqlite://data/sessions.db",
            "memory, sqlite://PATH or redis://HOST:PORT",
            parse_store,
        )?;
        let idle_timeout = r.parse(
            "SESSION_IDLE_TIMEOUT",
            "30m",
            "a duration such as 30m",
            parse_duration,
        )?;
        let absolute_timeout = r.parse(
            "SESSION_ABSOLUTE_TIMEOUT",
            "12h",
            "a duration such as 12h",
            parse_duration,
        )?;
        if absolute_timeout < idle_timeout {
            return Err(ConfigError {
                var: "SESSION_ABSOLUTE_TIMEOUT",
                value: humantime::format_duration(absolute_timeout).to_string(),
                expected: "a duration at least as long as SESSION_IDLE_TIMEOUT".into(),
            });
        }
        let default_audience = base_url.join("/api");
        let api_audience = r.raw("API_AUDIENCE", &default_audience);
        let app_database = r.parse(
            "APP_DATABASE_URL",
            "sqlite://data/gatehouse.db",
            "sqlite://PATH or sqlite::memory:",
            |v| {
                if v == "sqlite::memory:"
                    || v.strip_prefix("sqlite://").is_some_and(|p| !p.is_empty())
                {
                    Ok(v.to_string())
                } else {
                    Err("not a SQLite URL".into())
                }
            },
        )?;
        let remotes = r.parse(
            "API_REMOTES",
            "",
            "entries `name=URL [METHOD,…]` separated by `;`",
            parse_remotes,
        )?;

        Ok(Self {
            base_url,
            site_addr,
            oidc: OidcConfig {
                issuer,
                client_id,
                client_secret,
                scopes,
                roles_claim,
                backchannel_base_url,
                refresh_leeway,
            },
            session: SessionConfig {
                store,
                idle_timeout,
                absolute_timeout,
            },
            api_audience,
            app_database,
            remotes,
        })
    }

    /// The redirect URI registered at the IdP.
    pub fn redirect_uri(&self) -> String {
        self.base_url.join("/auth/callback")
    }
}

fn parse_scopes(raw: &str) -> Result<Vec<Scope>, String> {
    let scopes: Vec<&str> = raw.split_whitespace().collect();
    if !scopes.contains(&"openid") {
        return Err("openid is required".into());
    }
    if let Some(bad) = scopes.iter().find(|s| {
        !s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    }) {
        return Err(format!(
            "scope {bad:?} has characters RFC 6749 §3.3 forbids"
        ));
    }
    // openidconnect adds `openid` itself; keep the rest in order, once each.
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes.into_iter().filter(|s| *s != "openid") {
        if !out.iter().any(|o| o.as_str() == s) {
            out.push(Scope::new(s.to_string()));
        }
    }
    Ok(out)
}

/// `reports=http://reports.internal/ GET,POST; inventory=http://inv:8080/v1/`:
/// methods default to GET and HEAD; names are URL-safe and unique.
fn parse_remotes(raw: &str) -> Result<Vec<Remote>, String> {
    let mut remotes: Vec<Remote> = Vec::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, rest) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?} has no `=`"))?;
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(format!(
                "remote name {name:?} must be letters, digits, - or _"
            ));
        }
        if remotes.iter().any(|r| r.name == name) {
            return Err(format!("remote {name:?} is listed twice"));
        }
        let mut parts = rest.split_whitespace();
        let url = parts
            .next()
            .ok_or_else(|| format!("remote {name:?} has no URL"))?;
        let mut upstream = Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if !matches!(upstream.scheme(), "http" | "https") || upstream.host_str().is_none() {
            return Err(format!("{url:?} must be an http(s) URL with a host"));
        }
        if !upstream.username().is_empty()
            || upstream.query().is_some()
            || upstream.fragment().is_some()
        {
            return Err(format!(
                "{url:?} must have no credentials, query or fragment"
            ));
        }
        if !upstream.path().ends_with('/') {
            let path = format!("{}/", upstream.path());
            upstream.set_path(&path);
        }
        let methods = match parts.next() {
            None => vec![axum::http::Method::GET, axum::http::Method::HEAD],
            Some(list) => list
                .split(',')
                .map(|m| match m.trim().to_ascii_uppercase().as_str() {
                    "GET" => Ok(axum::http::Method::GET),
                    "HEAD" => Ok(axum::http::Method::HEAD),
                    "POST" => Ok(axum::http::Method::POST),
                    "PUT" => Ok(axum::http::Method::PUT),
                    "PATCH" => Ok(axum::http::Method::PATCH),
                    "DELETE" => Ok(axum::http::Method::DELETE),
                    other => Err(format!("method {other:?} cannot be relayed")),
                })
                .collect::<Result<_, _>>()?,
        };
        if parts.next().is_some() {
            return Err(format!("remote {name:?} has extra words"));
        }
        remotes.push(Remote {
            name: name.to_string(),
            upstream,
            methods,
        });
    }
    Ok(remotes)
}

fn parse_store(raw: &str) -> Result<StoreUrl, String> {
    if raw == "memory" {
        return Ok(StoreUrl::Memory);
    }
    if let Some(path) = raw.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("sqlite:// needs a file path".into());
        }
        return Ok(StoreUrl::Sqlite(raw.to_string()));
    }
    if raw.starts_with("redis://") || raw.starts_with("rediss://") {
        let url = Url::parse(raw).map_err(|e| e.to_string())?;
        if url.host_str().is_none() {
            return Err("redis URL has no host".into());
        }
        return Ok(StoreUrl::Redis(url));
    }
    Err("unknown store kind".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.base_url.origin(), "http://localhost:3000");
        assert_eq!(c.site_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.oidc.issuer.as_str(), "http://localhost:8080/realms/demo");
        assert_eq!(c.oidc.client_id.as_str(), "gatehouse");
        assert_eq!(c.oidc.client_secret.secret(), "gatehouse-dev-secret");
        let scopes: Vec<&str> = c.oidc.scopes.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["profile", "email", "offline_access"]);
        assert_eq!(c.oidc.roles_claim.to_string(), "realm_access.roles");
        assert_eq!(
            c.session.store,
            StoreUrl::Sqlite("sqlite://data/sessions.db".into())
        );
        assert_eq!(c.session.idle_timeout, Duration::from_secs(30 * 60));
        assert_eq!(c.session.absolute_timeout, Duration::from_secs(12 * 3600));
        assert_eq!(c.oidc.refresh_leeway, Duration::from_secs(30));
        assert_eq!(c.api_audience, "http://localhost:3000/api");
        assert_eq!(c.redirect_uri(), "http://localhost:3000/auth/callback");
        assert!(c.oidc.backchannel_base_url.is_none());
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases = [
            ("APP_BASE_URL", "ftp://x"),
            ("APP_BASE_URL", "http://localhost:3000/app"),
            ("APP_BASE_URL", "not a url"),
            ("LEPTOS_SITE_ADDR", "localhost"),
            ("OIDC_ISSUER_URL", "issuer"),
            ("OIDC_SCOPES", "profile email"),
            ("OIDC_ROLES_CLAIM", "a..b"),
            ("OIDC_BACKCHANNEL_BASE_URL", "keycloak:8080"),
            ("OIDC_REFRESH_LEEWAY", "soon"),
            ("SESSION_STORE", "postgres://db"),
            ("SESSION_IDLE_TIMEOUT", "0s"),
            ("SESSION_ABSOLUTE_TIMEOUT", "1m"),
            ("APP_DATABASE_URL", "postgres://db"),
            ("API_REMOTES", "reports"),
            ("API_REMOTES", "a b=http://x/"),
            ("API_REMOTES", "r=ftp://x/"),
            ("API_REMOTES", "r=http://x/ CONNECT"),
            ("API_REMOTES", "r=http://x/; r=http://y/"),
            ("API_REMOTES", "r=http://u:p@x/"),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{value}");
            let line = err.to_string();
            assert!(line.contains(var) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn stores_and_urls_parse() {
        let c = config(&[
            ("SESSION_STORE", "memory"),
            ("APP_BASE_URL", "https://app.example.com/"),
            ("OIDC_BACKCHANNEL_BASE_URL", "http://keycloak:8080"),
        ])
        .unwrap();
        assert_eq!(c.session.store, StoreUrl::Memory);
        assert_eq!(c.base_url.origin(), "https://app.example.com");
        assert!(c.base_url.is_https());
        assert_eq!(c.api_audience, "https://app.example.com/api");
        assert_eq!(
            c.oidc.backchannel_base_url.unwrap().as_str(),
            "http://keycloak:8080/"
        );
        let r = config(&[("SESSION_STORE", "redis://127.0.0.1:6379")]).unwrap();
        assert!(matches!(r.session.store, StoreUrl::Redis(_)));
    }

    #[test]
    fn remotes_parse_into_an_allow_list() {
        let c = config(&[(
            "API_REMOTES",
            "reports=http://reports.internal/v1 GET,post; inventory=https://inv.example/",
        )])
        .unwrap();
        assert_eq!(c.remotes.len(), 2);
        assert_eq!(c.remotes[0].name, "reports");
        assert_eq!(
            c.remotes[0].upstream.as_str(),
            "http://reports.internal/v1/"
        );
        assert_eq!(
            c.remotes[0].methods,
            [axum::http::Method::GET, axum::http::Method::POST]
        );
        assert_eq!(
            c.remotes[1].methods,
            [axum::http::Method::GET, axum::http::Method::HEAD]
        );
        assert!(config(&[]).unwrap().remotes.is_empty());
    }

    #[test]
    fn scopes_are_deduplicated_and_openid_is_implicit() {
        let c = config(&[("OIDC_SCOPES", "openid email email profile")]).unwrap();
        let scopes: Vec<&str> = c.oidc.scopes.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["email", "profile"]);
    }
}
