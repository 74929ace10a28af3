//! Single configuration values, each parsed into a type that can only hold a
//! valid value: the app's origin, switches, durations, the session store URL
//! and the relay allow-list.

use std::time::Duration;

use url::Url;

/// One allow-listed downstream API: `/api/remote/<name>/<rest>` is relayed to
/// `<upstream><rest>` for the listed methods only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    /// Always ends with `/`.
    pub upstream: Url,
    pub methods: Vec<axum::http::Method>,
    /// `aud=<URI>`: the resource indicator (RFC 8707) this API's access
    /// tokens are issued for. With one, the relay sends this API a token of
    /// its own, never the session's; without, the session's access token.
    pub resource: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    Memory,
    /// A sqlx SQLite URL, e.g. `sqlite://data/sessions.db`.
    Sqlite(String),
    Redis(Url),
    /// `postgres://…` (or `postgresql://…`), as libpq and sqlx read it.
    Postgres(Url),
}

/// The app's public origin. Parsing guarantees an http(s) URL with a host and no
/// path, query or fragment, so `origin()` and `join()` are always well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub(super) url: Url,
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

    /// `localhost`, `127.0.0.1` or `[::1]`: only this machine can reach it.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.url)
    }

    /// An absolute URL for a path on this origin (`path` must start with `/`).
    pub fn join(&self, path: &str) -> String {
        debug_assert!(path.starts_with('/'));
        format!("{}{}", self.origin, path)
    }
}

/// A switch: `1` or `0`, nothing else (no guessing at "yes" or "true").
pub(super) fn parse_flag(raw: &str) -> Result<bool, String> {
    match raw {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err("only 0 or 1".into()),
    }
}

/// A positive duration such as `30s`, `30m` or `12h`, parsed once into the
/// type every use of it needs (the rest of the code never converts again).
pub fn parse_duration(raw: &str) -> Result<time::Duration, String> {
    let d = humantime::parse_duration(raw).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    if d > Duration::from_secs(366 * 24 * 3600) {
        return Err("must be at most a year".into());
    }
    time::Duration::try_from(d).map_err(|e| e.to_string())
}

/// `acr_values` (OIDC Core §3.1.2.1): space-separated class references,
/// each printable ASCII without quotes or backslashes (they go into an
/// authorization URL and a `WWW-Authenticate` challenge).
pub fn parse_acr_values(raw: &str) -> Result<Vec<String>, String> {
    let values: Vec<String> = raw.split_whitespace().map(str::to_string).collect();
    if let Some(bad) = values.iter().find(|v| {
        !v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        return Err(format!(
            "{bad:?} has a character a class reference cannot have"
        ));
    }
    Ok(values)
}

/// `reports=http://reports.internal/ GET,POST; inventory=http://inv:8080/v1/`:
/// methods default to GET and HEAD; names are URL-safe and unique.
pub(super) fn parse_remotes(raw: &str) -> Result<Vec<Remote>, String> {
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
        let mut words: Vec<&str> = parts.collect();
        let resource = match words.iter().position(|w| w.starts_with("aud=")) {
            Some(at) => Some(parse_resource(&words.remove(at)["aud=".len()..])?),
            None => None,
        };
        let mut parts = words.into_iter();
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
            resource,
        });
    }
    Ok(remotes)
}

/// RFC 8707 §2: a resource indicator is an absolute URI without a fragment
/// (and should have no query). Kept as written: the IdP compares strings.
fn parse_resource(raw: &str) -> Result<String, String> {
    let url = Url::parse(raw).map_err(|e| format!("aud={raw:?}: {e}"))?;
    if url.fragment().is_some() || url.query().is_some() {
        return Err(format!(
            "aud={raw:?} must be an absolute URI without query or fragment (RFC 8707 §2)"
        ));
    }
    Ok(raw.to_string())
}

pub(super) fn parse_store(raw: &str) -> Result<StoreUrl, String> {
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
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        let url = Url::parse(raw).map_err(|e| e.to_string())?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("postgres URL has no host".into());
        }
        return Ok(StoreUrl::Postgres(url));
    }
    Err("unknown store kind".into())
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
