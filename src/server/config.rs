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
    pub var: String,
    pub value: String,
    pub expected: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The public origin of the app, e.g. `http://localhost:3000` (no path, no trailing slash).
    pub base_url: BaseUrl,
    pub site_addr: SocketAddr,
    /// The provider configured by the unprefixed `OIDC_*` variables.
    pub oidc: OidcConfig,
    /// More providers from `OIDC_PROVIDERS` (each with `OIDC_<NAME>_*`).
    pub extra_providers: Vec<OidcConfig>,
    pub session: SessionConfig,
    pub api_audience: String,
    /// The app's own data (notes, users seen): a sqlx SQLite URL.
    pub app_database: String,
    /// Downstream APIs the BFF relays to with the user's access token.
    pub remotes: Vec<Remote>,
    pub limits: LimitsConfig,
}

/// Abuse limits on the login flow (see `server::limits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `/auth/login`, `/auth/signup` and `/auth/callback` requests per client IP
    /// and minute (also the burst allowed at once).
    pub auth_per_minute: u32,
    /// Take the client IP from `X-Forwarded-For`/`X-Real-IP`/`Forwarded`
    /// (only behind a proxy that sets them; otherwise anyone can pick an IP).
    pub trust_forwarded: bool,
    /// Login transactions one instance starts per pending-login lifetime (10 min).
    pub pending_logins_max: u32,
    /// Open `/auth/events` streams on one instance, all sessions together.
    pub event_streams_max: u32,
    /// Open `/auth/events` streams of one session (its tabs).
    pub event_streams_per_session: u32,
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
    /// How sessions, pending logins and `/auth/login?idp=` name this provider:
    /// `default` for the one configured by the unprefixed `OIDC_*` variables.
    pub name: String,
    /// What the sign-in chooser shows when several providers are configured.
    pub label: String,
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    pub client_secret: ClientSecret,
    pub scopes: Vec<Scope>,
    pub roles_claim: ClaimPath,
    /// Server-to-IdP origin for split networks: discovery, token, JWKS and
    /// userinfo calls go there; the browser keeps the public URLs.
    pub backchannel_base_url: Option<BaseUrl>,
    /// Extra authorization-request parameters (Logto's `resource`, Keycloak's
    /// `kc_idp_hint`, Auth0's `audience`); never a protocol parameter.
    pub extra_auth_params: Vec<(String, String)>,
    pub refresh_leeway: time::Duration,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub store: StoreUrl,
    pub idle_timeout: time::Duration,
    pub absolute_timeout: time::Duration,
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
    fn raw(&self, var: &str, default: &str) -> String {
        match self.0.get(var) {
            Some(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => default.to_string(),
        }
    }

    fn optional(&self, var: &str) -> Option<String> {
        self.0
            .get(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T>(
        &self,
        var: &str,
        default: &str,
        expected: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let value = self.raw(var, default);
        f(&value).map_err(|why| ConfigError {
            var: var.to_string(),
            value: value.clone(),
            expected: format!("{expected} ({why})"),
        })
    }
}

/// A switch: `1` or `0`, nothing else (no guessing at "yes" or "true").
fn parse_flag(raw: &str) -> Result<bool, String> {
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
        let refresh_leeway = r.parse(
            "OIDC_REFRESH_LEEWAY",
            "30s",
            "a duration such as 30s",
            parse_duration,
        )?;
        let oidc = read_provider(&r, None, refresh_leeway)?;
        let names = r.parse(
            "OIDC_PROVIDERS",
            "",
            "provider names (letters, digits, -) separated by spaces or commas, not `default`",
            parse_provider_names,
        )?;
        let mut extra_providers: Vec<OidcConfig> = Vec::new();
        for name in names {
            let p = read_provider(&r, Some(&name), refresh_leeway)?;
            // Mix-up defence (RFC 9700 §4.4.2) tells providers apart by issuer.
            if p.issuer == oidc.issuer || extra_providers.iter().any(|o| o.issuer == p.issuer) {
                return Err(ConfigError {
                    var: format!("{}ISSUER_URL", provider_prefix(Some(&name))),
                    value: p.issuer.to_string(),
                    expected: "an issuer no other configured provider has".into(),
                });
            }
            extra_providers.push(p);
        }
        let store = r
            .parse(
                "SESSION_STORE",
                "sqlite://data/sessions.db",
                "memory, sqlite://PATH or redis://HOST:PORT",
                parse_store,
            )
            .map_err(|mut e| {
                // A Redis URL may carry a password: never in a message or a log.
                e.value = without_password(&e.value);
                e
            })?;
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
                var: "SESSION_ABSOLUTE_TIMEOUT".into(),
                value: r.raw("SESSION_ABSOLUTE_TIMEOUT", "12h"),
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
        let allow_insecure = r.parse(
            "GATEHOUSE_ALLOW_INSECURE",
            "0",
            "1 (downgrade the start-up security checks to warnings) or 0",
            parse_flag,
        )?;
        refuse_insecure(&base_url, &oidc, &extra_providers, &remotes, allow_insecure)?;
        let positive = |v: &str| match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) => Err("must be greater than zero".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let limits = LimitsConfig {
            auth_per_minute: r.parse(
                "AUTH_RATE_LIMIT_PER_MINUTE",
                "60",
                "a whole number of requests per client IP and minute",
                positive,
            )?,
            trust_forwarded: r.parse(
                "TRUST_FORWARDED_FOR",
                "0",
                "1 (behind a proxy that sets X-Forwarded-For) or 0",
                parse_flag,
            )?,
            pending_logins_max: r.parse(
                "PENDING_LOGINS_MAX",
                "10000",
                "a whole number of login transactions",
                positive,
            )?,
            event_streams_max: r.parse(
                "EVENT_STREAMS_MAX",
                "20000",
                "a whole number of open /auth/events streams",
                positive,
            )?,
            event_streams_per_session: r.parse(
                "EVENT_STREAMS_PER_SESSION",
                "32",
                "a whole number of open /auth/events streams",
                positive,
            )?,
        };

        Ok(Self {
            base_url,
            site_addr,
            oidc,
            extra_providers,
            session: SessionConfig {
                store,
                idle_timeout,
                absolute_timeout,
            },
            api_audience,
            app_database,
            remotes,
            limits,
        })
    }

    /// The redirect URI registered at the default IdP.
    pub fn redirect_uri(&self) -> String {
        self.base_url.join("/auth/callback")
    }

    /// The redirect URI registered at provider `name`: `/auth/callback` for
    /// the default one, `/auth/callback/<name>` for each in `OIDC_PROVIDERS`.
    /// One per provider is the mix-up defence that does not depend on the IdP
    /// sending `iss` (RFC 9700 §4.4.2): the URL a response arrives at says
    /// which provider it must come from.
    pub fn redirect_uri_for(&self, name: &str) -> String {
        if name == DEFAULT_PROVIDER {
            self.redirect_uri()
        } else {
            self.base_url.join(&format!("/auth/callback/{name}"))
        }
    }
}

/// `raw` with the password of a URL's userinfo replaced by `***` (as is, if
/// it is not a URL with a password).
pub fn without_password(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => raw.to_string(),
        // Not parseable: hide whatever sits between "://" and the last "@".
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(start), Some(end)) if end > start => {
                format!("{}***{}", &raw[..start + 3], &raw[end..])
            }
            _ => raw.to_string(),
        },
    }
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The development client secret, which is public (it is in this repository).
pub const DEV_CLIENT_SECRET: &str = "gatehouse-dev-secret";

/// The start-up self-check on the configuration alone (OWASP ASVS 5.0 §3.3:
/// cookies only over TLS; no shared default credentials). Outside loopback,
/// plain http would send the session cookie in clear text and the dev client
/// secret is known to everyone: both refuse to start, unless
/// `GATEHOUSE_ALLOW_INSECURE=1` turns them into warnings. (A session cookie
/// without `Secure` on https cannot happen: `Secure` and the `__Host-` prefix
/// follow from an https `APP_BASE_URL` by construction.)
fn refuse_insecure(
    base_url: &BaseUrl,
    oidc: &OidcConfig,
    extra: &[OidcConfig],
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

/// `OIDC_` for the default provider, `OIDC_<NAME>_` for one named in `OIDC_PROVIDERS`.
fn provider_prefix(name: Option<&str>) -> String {
    match name {
        None => "OIDC_".into(),
        Some(n) => format!("OIDC_{}_", n.to_ascii_uppercase().replace('-', "_")),
    }
}

/// One provider's variables. The default provider has development defaults;
/// a named one must give its issuer, client id and secret.
fn read_provider<L: Lookup>(
    r: &Reader<'_, L>,
    name: Option<&str>,
    refresh_leeway: time::Duration,
) -> Result<OidcConfig, ConfigError> {
    let prefix = provider_prefix(name);
    let var = |suffix: &str| format!("{prefix}{suffix}");
    let required = |suffix: &str| -> Result<(), ConfigError> {
        match (name, r.optional(&var(suffix))) {
            (Some(n), None) => Err(ConfigError {
                var: var(suffix),
                value: String::new(),
                expected: format!("a value: provider {n:?} is listed in OIDC_PROVIDERS"),
            }),
            _ => Ok(()),
        }
    };
    required("ISSUER_URL")?;
    required("CLIENT_ID")?;
    required("CLIENT_SECRET")?;
    let issuer = r.parse(
        &var("ISSUER_URL"),
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
    let client_id = r.parse(&var("CLIENT_ID"), "gatehouse", "a client id", |v| {
        Ok(ClientId::new(v.to_string()))
    })?;
    let client_secret = ClientSecret::new(r.raw(&var("CLIENT_SECRET"), DEV_CLIENT_SECRET));
    let scopes = r.parse(
        &var("SCOPES"),
        "openid profile email offline_access",
        "space-separated scopes including openid",
        parse_scopes,
    )?;
    let roles_claim = r.parse(
        &var("ROLES_CLAIM"),
        "realm_access.roles",
        "a dotted claim path such as realm_access.roles or roles",
        ClaimPath::parse,
    )?;
    let backchannel_base_url = match r.optional(&var("BACKCHANNEL_BASE_URL")) {
        None => None,
        Some(v) => Some(r.parse(
            &var("BACKCHANNEL_BASE_URL"),
            &v,
            "an http(s) origin such as http://keycloak:8080",
            BaseUrl::parse,
        )?),
    };
    let extra_auth_params = r.parse(
        &var("EXTRA_AUTH_PARAMS"),
        "",
        "query syntax such as resource=https%3A%2F%2Fapi&kc_idp_hint=github",
        parse_extra_auth_params,
    )?;
    let default_label = Url::parse(issuer.as_str())
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| issuer.to_string());
    let label = r.raw(&var("LABEL"), name.unwrap_or(&default_label));
    Ok(OidcConfig {
        name: name.unwrap_or(DEFAULT_PROVIDER).to_string(),
        label,
        issuer,
        client_id,
        client_secret,
        scopes,
        roles_claim,
        backchannel_base_url,
        extra_auth_params,
        refresh_leeway,
    })
}

/// The name of the provider the unprefixed `OIDC_*` variables configure.
pub const DEFAULT_PROVIDER: &str = "default";

fn parse_provider_names(raw: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in raw
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
    {
        let name = name.to_ascii_lowercase();
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("{name:?} must be letters, digits or -"));
        }
        if name == DEFAULT_PROVIDER {
            return Err("`default` is the unprefixed OIDC_* provider".into());
        }
        if names.contains(&name) {
            return Err(format!("{name:?} is listed twice"));
        }
        names.push(name);
    }
    Ok(names)
}

/// Parameters the flow itself sets: configuration may not override them
/// (OIDC Core §3.1.2.1, RFC 7636, RFC 9700 §2.1.1). `prompt` is allowed
/// (Logto needs `prompt=consent` for refresh tokens); sign-up replaces it.
const PROTOCOL_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
    "id_token_hint",
];

fn parse_extra_auth_params(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if key.is_empty() {
            return Err("a parameter has no name".into());
        }
        if PROTOCOL_PARAMS.contains(&key.as_ref()) {
            return Err(format!("{key} is set by the sign-in flow itself"));
        }
        out.push((key.into_owned(), value.into_owned()));
    }
    Ok(out)
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
        assert_eq!(c.session.idle_timeout, time::Duration::minutes(30));
        assert_eq!(c.session.absolute_timeout, time::Duration::hours(12));
        assert_eq!(c.oidc.refresh_leeway, time::Duration::seconds(30));
        assert_eq!(c.api_audience, "http://localhost:3000/api");
        assert_eq!(c.redirect_uri(), "http://localhost:3000/auth/callback");
        assert_eq!(
            c.redirect_uri_for(DEFAULT_PROVIDER),
            "http://localhost:3000/auth/callback"
        );
        assert_eq!(
            c.redirect_uri_for("logto"),
            "http://localhost:3000/auth/callback/logto"
        );
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
            (
                "OIDC_BACKCHANNEL_BASE_URL",
                "http://keycloak:8080/realms/demo",
            ),
            ("OIDC_EXTRA_AUTH_PARAMS", "kc_idp_hint=github&state=x"),
            ("OIDC_EXTRA_AUTH_PARAMS", "=x"),
            ("OIDC_PROVIDERS", "default"),
            ("OIDC_PROVIDERS", "a b a"),
            ("OIDC_PROVIDERS", "logto!"),
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
            ("OIDC_CLIENT_SECRET", "a-real-secret"),
            ("OIDC_BACKCHANNEL_BASE_URL", "https://keycloak:8443"),
        ])
        .unwrap();
        assert_eq!(c.session.store, StoreUrl::Memory);
        assert_eq!(c.base_url.origin(), "https://app.example.com");
        assert!(c.base_url.is_https());
        assert_eq!(c.api_audience, "https://app.example.com/api");
        assert_eq!(
            c.oidc.backchannel_base_url.unwrap().origin(),
            "https://keycloak:8443"
        );
        let r = config(&[("SESSION_STORE", "redis://127.0.0.1:6379")]).unwrap();
        assert!(matches!(r.session.store, StoreUrl::Redis(_)));
    }

    #[test]
    fn remotes_parse_into_an_allow_list() {
        let c = config(&[(
            "API_REMOTES",
            "reports=http://127.0.0.1:9000/v1 GET,post; inventory=https://inv.example/",
        )])
        .unwrap();
        assert_eq!(c.remotes.len(), 2);
        assert_eq!(c.remotes[0].name, "reports");
        assert_eq!(c.remotes[0].upstream.as_str(), "http://127.0.0.1:9000/v1/");
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

    #[test]
    fn named_providers_need_their_own_issuer_and_client() {
        let err = config(&[("OIDC_PROVIDERS", "logto")]).unwrap_err();
        assert_eq!(err.var, "OIDC_LOGTO_ISSUER_URL");
        let err = config(&[
            ("OIDC_PROVIDERS", "logto"),
            ("OIDC_LOGTO_ISSUER_URL", "https://t.logto.app/oidc"),
            ("OIDC_LOGTO_CLIENT_ID", "abc"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OIDC_LOGTO_CLIENT_SECRET");
        // Two providers with one issuer could not be told apart (mix-up).
        let err = config(&[
            ("OIDC_PROVIDERS", "again"),
            ("OIDC_AGAIN_ISSUER_URL", "http://localhost:8080/realms/demo"),
            ("OIDC_AGAIN_CLIENT_ID", "x"),
            ("OIDC_AGAIN_CLIENT_SECRET", "y"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OIDC_AGAIN_ISSUER_URL");
    }

    #[test]
    fn named_providers_parse_with_their_own_settings() {
        let c = config(&[
            ("OIDC_PROVIDERS", "logto, my-idp"),
            ("OIDC_LOGTO_ISSUER_URL", "https://t.logto.app/oidc"),
            ("OIDC_LOGTO_CLIENT_ID", "abc"),
            ("OIDC_LOGTO_CLIENT_SECRET", "s3"),
            ("OIDC_LOGTO_ROLES_CLAIM", "roles"),
            ("OIDC_LOGTO_LABEL", "Logto"),
            (
                "OIDC_LOGTO_EXTRA_AUTH_PARAMS",
                "resource=http%3A%2F%2Flocalhost%3A3000%2Fapi&prompt=consent",
            ),
            ("OIDC_MY_IDP_ISSUER_URL", "https://idp.example.com/"),
            ("OIDC_MY_IDP_CLIENT_ID", "c"),
            ("OIDC_MY_IDP_CLIENT_SECRET", "d"),
        ])
        .unwrap();
        assert_eq!(c.oidc.name, DEFAULT_PROVIDER);
        assert_eq!(c.oidc.label, "localhost:8080");
        let names: Vec<&str> = c.extra_providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["logto", "my-idp"]);
        let logto = &c.extra_providers[0];
        assert_eq!(logto.label, "Logto");
        assert_eq!(logto.client_secret.secret(), "s3");
        assert_eq!(logto.roles_claim.to_string(), "roles");
        assert_eq!(
            logto.extra_auth_params,
            [
                (
                    "resource".to_string(),
                    "http://localhost:3000/api".to_string()
                ),
                ("prompt".to_string(), "consent".to_string())
            ]
        );
        assert_eq!(c.extra_providers[1].label, "my-idp");
        assert!(c.oidc.extra_auth_params.is_empty());
    }

    #[test]
    fn insecure_deployments_refuse_to_start_unless_allowed() {
        // Plain http outside loopback: the session cookie would travel in clear.
        for base in ["http://app.example.com", "http://10.0.0.5:3000"] {
            let err = config(&[("APP_BASE_URL", base), ("OIDC_CLIENT_SECRET", "s")]).unwrap_err();
            assert_eq!(err.var, "APP_BASE_URL", "{base}");
        }
        // The public development secret outside loopback, for any provider.
        let err = config(&[("APP_BASE_URL", "https://app.example.com")]).unwrap_err();
        assert_eq!(err.var, "OIDC_CLIENT_SECRET");
        let err = config(&[
            ("APP_BASE_URL", "https://app.example.com"),
            ("OIDC_CLIENT_SECRET", "s"),
            ("OIDC_PROVIDERS", "partner"),
            ("OIDC_PARTNER_ISSUER_URL", "https://idp.example.com"),
            ("OIDC_PARTNER_CLIENT_ID", "c"),
            ("OIDC_PARTNER_CLIENT_SECRET", DEV_CLIENT_SECRET),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OIDC_PARTNER_CLIENT_SECRET");
        assert!(!err.to_string().contains(DEV_CLIENT_SECRET), "{err}");
        // Loopback is development: both are fine.
        for base in [
            "http://localhost:3000",
            "http://127.0.0.1:3000",
            "http://[::1]:3000",
        ] {
            config(&[("APP_BASE_URL", base)]).unwrap();
        }
        // The documented override, and nothing but 0 or 1.
        config(&[
            ("APP_BASE_URL", "http://app.example.com"),
            ("GATEHOUSE_ALLOW_INSECURE", "1"),
        ])
        .unwrap();
        let err = config(&[("GATEHOUSE_ALLOW_INSECURE", "yes")]).unwrap_err();
        assert_eq!(err.var, "GATEHOUSE_ALLOW_INSECURE");
        config(&[
            ("APP_BASE_URL", "https://app.example.com"),
            ("OIDC_CLIENT_SECRET", "a-real-secret"),
        ])
        .unwrap();
    }

    #[test]
    fn a_redis_password_never_appears_in_an_error() {
        for raw in [
            "redis://:hunter2@",
            "redis://user:hunter2@:6379",
            "rediss://u:hunter2@[::1",
        ] {
            let err = config(&[("SESSION_STORE", raw)]).unwrap_err();
            assert_eq!(err.var, "SESSION_STORE");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert_eq!(
            without_password("redis://u:hunter2@cache:6379/0"),
            "redis://u:***@cache:6379/0"
        );
    }

    #[test]
    fn tokens_never_travel_over_plain_http_off_loopback() {
        let cases: [(&[(&str, &str)], &str); 4] = [
            (
                &[("OIDC_ISSUER_URL", "http://idp.example.com/realms/demo")],
                "OIDC_ISSUER_URL",
            ),
            (
                &[("OIDC_BACKCHANNEL_BASE_URL", "http://keycloak:8080")],
                "OIDC_BACKCHANNEL_BASE_URL",
            ),
            (
                &[("API_REMOTES", "orders=http://orders.internal/api/")],
                "API_REMOTES (orders)",
            ),
            (
                &[
                    ("OIDC_PROVIDERS", "partner"),
                    ("OIDC_PARTNER_ISSUER_URL", "http://10.1.2.3/oidc"),
                    ("OIDC_PARTNER_CLIENT_ID", "c"),
                    ("OIDC_PARTNER_CLIENT_SECRET", "s"),
                ],
                "OIDC_PARTNER_ISSUER_URL",
            ),
        ];
        for (vars, var) in cases {
            let err = config(vars).unwrap_err();
            assert_eq!(err.var, var, "{vars:?}");
            let mut allowed = vars.to_vec();
            allowed.push(("GATEHOUSE_ALLOW_INSECURE", "1"));
            config(&allowed).unwrap();
        }
        // Loopback (any 127/8 address, localhost, ::1) and https are fine.
        config(&[
            ("OIDC_ISSUER_URL", "http://localhost:8080/realms/demo"),
            ("OIDC_BACKCHANNEL_BASE_URL", "http://127.0.0.2:8080"),
            (
                "API_REMOTES",
                "a=http://[::1]:9000/; b=https://api.example.com/",
            ),
        ])
        .unwrap();
    }
}
