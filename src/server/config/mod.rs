//! Typed configuration, parsed once at start-up from the environment (and an
//! optional `.env` file). Every value is parsed into a type that can only hold a
//! valid value, so the rest of the code never re-checks it; a bad value stops the
//! program with one line naming the variable and what it expects.
//!
//! This file holds the `Config` and how it is read; `values.rs` parses single
//! values (the app's origin, durations, the store URL, the relay allow-list),
//! `idp.rs` one identity provider's `OIDC_*` variables, and `safety.rs`
//! the start-up refusal of insecure deployments.

mod idp;
mod safety;
mod values;

use std::net::SocketAddr;

pub use idp::{
    ClientAuth, ClientKey, IdpConfig, ParMode, RsaAlg, DEFAULT_PROVIDER, DEV_CLIENT_SECRET,
};
pub use safety::without_password;
pub use values::{is_loopback_host, parse_acr_values, parse_duration, BaseUrl, Remote, StoreUrl};

use idp::{parse_provider_names, provider_prefix, read_provider};
use safety::refuse_insecure;
use values::{parse_flag, parse_remotes, parse_store};

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
    pub default_idp: IdpConfig,
    /// More providers from `OIDC_PROVIDERS` (each with `OIDC_<NAME>_*`).
    pub extra_idps: Vec<IdpConfig>,
    pub session: SessionConfig,
    pub api_audience: String,
    /// The app's own data (notes, users seen): a sqlx SQLite URL.
    pub app_database: String,
    /// Downstream APIs the BFF relays to with the user's access token.
    pub remotes: Vec<Remote>,
    pub limits: LimitsConfig,
    /// What `/admin`, its server functions and `/api/admin/*` ask of the
    /// admin's sign-in (step-up authentication).
    pub admin_auth: AuthRequirement,
    /// `SHUTDOWN_GRACE`: how long requests in flight at SIGTERM may take.
    pub shutdown_grace: std::time::Duration,
    /// `PAGE_DEADLINE`: a server-rendered page not ready by then is a 503.
    pub page_deadline: std::time::Duration,
    /// `METRICS_ADDR`: where Prometheus scrapes `/metrics` (its own
    /// listener, never the public one); `None`: no metrics.
    pub metrics_addr: Option<SocketAddr>,
}

/// How recent, and of which class, a sign-in must be for something
/// (OpenID Connect `max_age` / `acr_values`, RFC 9470). Both empty: any
/// sign-in will do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthRequirement {
    /// The sign-in must be at most this old.
    pub max_age: Option<time::Duration>,
    /// The session's `acr` must be one of these.
    pub acr_values: Vec<String>,
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

#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub store: StoreUrl,
    pub idle_timeout: time::Duration,
    pub absolute_timeout: time::Duration,
    /// `SESSION_ENCRYPTION_KEY`: the keys that seal stored records, newest
    /// first (empty: no deployment key).
    pub encryption_keys: Vec<EncryptionKey>,
    /// `SESSION_KEY_IN_COOKIE`: each stored record sealed with a key derived
    /// from its session's cookie, which only the browser keeps.
    pub key_in_cookie: bool,
}

/// A 256-bit key that seals session records at rest. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey([u8; 32]);

impl EncryptionKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

/// Keys separated by `,`, each 32 bytes in base64 (standard or URL-safe,
/// padded or not), e.g. from `openssl rand -base64 32`.
fn parse_encryption_keys(raw: &str) -> Result<Vec<EncryptionKey>, String> {
    use base64::{
        engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
        Engine,
    };
    raw.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .enumerate()
        .map(|(i, k)| {
            let bytes = STANDARD
                .decode(k)
                .or_else(|_| URL_SAFE_NO_PAD.decode(k.trim_end_matches('=')))
                .map_err(|_| format!("key {} is not base64", i + 1))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("key {} is not 32 bytes", i + 1))?;
            Ok(EncryptionKey(bytes))
        })
        .collect()
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

impl Config {
    /// The resource indicators of the relayed APIs (`aud=` in
    /// `API_REMOTES`), each once, in the order first named.
    pub fn resources(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for resource in self.remotes.iter().filter_map(|r| r.resource.as_deref()) {
            if !out.contains(&resource) {
                out.push(resource);
            }
        }
        out
    }

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
        let mut extra_idps: Vec<IdpConfig> = Vec::new();
        for name in names {
            let p = read_provider(&r, Some(&name), refresh_leeway)?;
            // Mix-up defence (RFC 9700 §4.4.2) tells providers apart by issuer.
            if p.issuer == oidc.issuer || extra_idps.iter().any(|o| o.issuer == p.issuer) {
                return Err(ConfigError {
                    var: format!("{}ISSUER_URL", provider_prefix(Some(&name))),
                    value: p.issuer.to_string(),
                    expected: "an issuer no other configured provider has".into(),
                });
            }
            extra_idps.push(p);
        }
        let store = r
            .parse(
                "SESSION_STORE",
                "sqlite://data/sessions.db",
                "memory, sqlite://PATH, redis://HOST:PORT or postgres://USER@HOST/DB",
                parse_store,
            )
            .map_err(|mut e| {
                // A Redis or Postgres URL may carry a password: never in a
                // message or a log.
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
        refuse_insecure(&base_url, &oidc, &extra_idps, &remotes, allow_insecure)?;
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

        let admin_auth = AuthRequirement {
            max_age: r.parse(
                "ADMIN_MAX_AUTH_AGE",
                "10m",
                "a duration such as 10m, or off",
                |v| match v {
                    "off" => Ok(None),
                    v => parse_duration(v).map(Some),
                },
            )?,
            acr_values: r.parse(
                "ADMIN_ACR_VALUES",
                "",
                "authentication context classes separated by spaces",
                parse_acr_values,
            )?,
        };

        Ok(Self {
            base_url,
            site_addr,
            default_idp: oidc,
            extra_idps,
            session: SessionConfig {
                store,
                idle_timeout,
                absolute_timeout,
                encryption_keys: r
                    .parse(
                        "SESSION_ENCRYPTION_KEY",
                        "",
                        "32-byte keys in base64, newest first, separated by commas",
                        parse_encryption_keys,
                    )
                    .map_err(|mut e| {
                        // Keys are secrets: never in a message or a log.
                        e.value = "[redacted]".into();
                        e
                    })?,
                key_in_cookie: r.parse(
                    "SESSION_KEY_IN_COOKIE",
                    "1",
                    "1 (on) or 0 (off)",
                    parse_flag,
                )?,
            },
            api_audience,
            app_database,
            remotes,
            limits,
            admin_auth,
            shutdown_grace: r
                .parse(
                    "SHUTDOWN_GRACE",
                    "20s",
                    "a duration such as 20s",
                    parse_duration,
                )?
                .unsigned_abs(),
            page_deadline: r
                .parse(
                    "PAGE_DEADLINE",
                    "35s",
                    "a duration such as 35s",
                    parse_duration,
                )?
                .unsigned_abs(),
            metrics_addr: r.parse(
                "METRICS_ADDR",
                "",
                "host:port such as 127.0.0.1:9100, or unset",
                |v| match v {
                    "" => Ok(None),
                    v => v.parse().map(Some).map_err(|e| format!("{e}")),
                },
            )?,
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
        assert_eq!(
            c.default_idp.issuer.as_str(),
            "http://localhost:8080/realms/demo"
        );
        assert_eq!(c.default_idp.client_id.as_str(), "gatehouse");
        assert_eq!(c.default_idp.client_secret.secret(), "gatehouse-dev-secret");
        let scopes: Vec<&str> = c.default_idp.scopes.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["profile", "email", "offline_access"]);
        assert_eq!(c.default_idp.roles_claim.to_string(), "realm_access.roles");
        assert_eq!(
            c.session.store,
            StoreUrl::Sqlite("sqlite://data/sessions.db".into())
        );
        assert_eq!(c.session.idle_timeout, time::Duration::minutes(30));
        assert_eq!(c.session.absolute_timeout, time::Duration::hours(12));
        assert_eq!(c.default_idp.refresh_leeway, time::Duration::seconds(30));
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
        assert!(c.default_idp.backchannel_base_url.is_none());
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
            ("SESSION_STORE", "mysql://db"),
            ("SESSION_IDLE_TIMEOUT", "0s"),
            ("SESSION_ABSOLUTE_TIMEOUT", "1m"),
            ("APP_DATABASE_URL", "postgres://db"),
            ("API_REMOTES", "reports"),
            ("API_REMOTES", "a b=http://x/"),
            ("API_REMOTES", "r=ftp://x/"),
            ("API_REMOTES", "r=http://x/ CONNECT"),
            ("API_REMOTES", "r=http://x/; r=http://y/"),
            ("API_REMOTES", "r=http://u:p@x/"),
            ("OIDC_PAR", "sometimes"),
            ("OIDC_DPOP", "yes"),
            ("OIDC_CLIENT_AUTH", "client_secret_jwt"),
            ("ADMIN_MAX_AUTH_AGE", "0s"),
            ("ADMIN_ACR_VALUES", "urn:\"quoted\""),
        ];
        for (var, value) in cases {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var, "{value}");
            let line = err.to_string();
            assert!(line.contains(var) && !line.contains('\n'), "{line}");
        }
    }

    /// `private_key_jwt` needs a readable RSA key of 2048 bits or more, or a
    /// P-256 key; the error names the file variable, never the key.
    #[test]
    fn private_key_jwt_needs_a_usable_rsa_or_p256_key() {
        let auth = ("OIDC_CLIENT_AUTH", "private_key_jwt");
        let missing = config(&[auth]).expect_err("no key file");
        assert_eq!(missing.var, "OIDC_CLIENT_KEY_FILE");
        let not_a_key = config(&[auth, ("OIDC_CLIENT_KEY_FILE", "Cargo.toml")]).expect_err("toml");
        assert_eq!(not_a_key.var, "OIDC_CLIENT_KEY_FILE");
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/end2end/idp/dev-client-key.pem"
        );
        let c = config(&[auth, ("OIDC_CLIENT_KEY_FILE", key)]).unwrap();
        let ClientAuth::PrivateKeyJwt(parsed) = &c.default_idp.client_auth else {
            panic!("{:?}", c.default_idp.client_auth);
        };
        assert!(
            matches!(parsed, ClientKey::Rsa { pem, alg: RsaAlg::Rs256 } if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"))
        );
        assert_eq!(format!("{parsed:?}"), "ClientKey(..)", "never printed");
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
        // A P-256 key signs ES256 assertions instead.
        let ec = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/end2end/idp/dev-client-key-ec.pem"
        );
        let c = config(&[auth, ("OIDC_CLIENT_KEY_FILE", ec)]).unwrap();
        assert!(matches!(
            c.default_idp.client_auth,
            ClientAuth::PrivateKeyJwt(ClientKey::Ec(_))
        ));
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));

        // The signing algorithm: PS256 for the RSA key; one the key cannot
        // sign with, or none known, is refused, naming the variable.
        let ps = config(&[
            auth,
            ("OIDC_CLIENT_KEY_FILE", key),
            ("OIDC_CLIENT_KEY_ALG", "PS256"),
        ])
        .unwrap();
        assert!(matches!(
            ps.default_idp.client_auth,
            ClientAuth::PrivateKeyJwt(ClientKey::Rsa {
                alg: RsaAlg::Ps256,
                ..
            })
        ));
        for (file, alg, var) in [
            (ec, "PS256", "OIDC_CLIENT_KEY_FILE"),
            (key, "ES256", "OIDC_CLIENT_KEY_FILE"),
            (key, "HS256", "OIDC_CLIENT_KEY_ALG"),
        ] {
            let err = config(&[
                auth,
                ("OIDC_CLIENT_KEY_FILE", file),
                ("OIDC_CLIENT_KEY_ALG", alg),
            ])
            .expect_err(alg);
            assert_eq!(err.var, var, "{alg}: {err}");
        }
    }

    /// A private JWK works as a key file (RSA or P-256), its `alg` chosen
    /// when no variable says otherwise; a public-only JWK, or one whose
    /// public half does not match its private one, is refused.
    #[test]
    fn private_key_jwt_reads_private_jwks() {
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        use rsa::{pkcs1::DecodeRsaPrivateKey, traits::PrivateKeyParts, traits::PublicKeyParts};
        let pem = include_str!("../../../end2end/idp/dev-client-key.pem");
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .or_else(|_| {
                use rsa::pkcs8::DecodePrivateKey;
                rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            })
            .unwrap();
        let b64 = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
        let rsa_jwk = serde_json::json!({
            "kty": "RSA", "alg": "PS256",
            "n": b64(key.n()), "e": b64(key.e()), "d": b64(key.d()),
            "p": b64(&key.primes()[0]), "q": b64(&key.primes()[1]),
        });
        let dir = std::env::temp_dir().join(format!("gatehouse-jwk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, jwk: &serde_json::Value| {
            let path = dir.join(name);
            std::fs::write(&path, jwk.to_string()).unwrap();
            path.to_string_lossy().into_owned()
        };
        let auth = ("OIDC_CLIENT_AUTH", "private_key_jwt");
        let rsa_file = write("rsa.json", &rsa_jwk);
        let c = config(&[auth, ("OIDC_CLIENT_KEY_FILE", &rsa_file)]).unwrap();
        assert!(matches!(
            c.default_idp.client_auth,
            ClientAuth::PrivateKeyJwt(ClientKey::Rsa {
                alg: RsaAlg::Ps256,
                ..
            })
        ));
        // The variable wins over the JWK's own `alg`.
        let c = config(&[
            auth,
            ("OIDC_CLIENT_KEY_FILE", &rsa_file),
            ("OIDC_CLIENT_KEY_ALG", "RS256"),
        ])
        .unwrap();
        assert!(matches!(
            c.default_idp.client_auth,
            ClientAuth::PrivateKeyJwt(ClientKey::Rsa {
                alg: RsaAlg::Rs256,
                ..
            })
        ));

        // A P-256 key: its scalar is the JWK's `d`.
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let mut ec_jwk = crate::auth::es256::Es256Key::from_scalar(&secret.to_bytes())
            .unwrap()
            .public_jwk();
        ec_jwk["d"] = serde_json::json!(URL_SAFE_NO_PAD.encode(secret.to_bytes()));
        let ec_file = write("ec.json", &ec_jwk);
        let c = config(&[auth, ("OIDC_CLIENT_KEY_FILE", &ec_file)]).unwrap();
        assert!(matches!(
            c.default_idp.client_auth,
            ClientAuth::PrivateKeyJwt(ClientKey::Ec(_))
        ));

        let mut public_only = rsa_jwk.clone();
        public_only.as_object_mut().unwrap().remove("d");
        let mut mismatched = ec_jwk.clone();
        mismatched["x"] = crate::auth::es256::Es256Key::generate().public_jwk()["x"].clone();
        let mut wrong_prime = rsa_jwk.clone();
        wrong_prime["p"] = rsa_jwk["q"].clone();
        for (name, jwk) in [
            ("public.json", public_only),
            ("mismatched.json", mismatched),
            ("prime.json", wrong_prime),
            ("oct.json", serde_json::json!({"kty": "oct", "k": "AAAA"})),
        ] {
            let file = write(name, &jwk);
            let err = config(&[auth, ("OIDC_CLIENT_KEY_FILE", &file)]).expect_err(name);
            assert_eq!(err.var, "OIDC_CLIENT_KEY_FILE", "{name}");
            for secret in [&rsa_jwk["d"], &rsa_jwk["p"], &ec_jwk["d"]] {
                let secret = secret.as_str().unwrap();
                assert!(!err.to_string().contains(secret), "{name}: a key in {err}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Session encryption keys: 32 bytes of base64 each, newest first;
    /// a bad one names its position, never its value.
    #[test]
    fn session_encryption_keys_parse_and_never_print() {
        assert!(config(&[]).unwrap().session.encryption_keys.is_empty());
        let new = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
        let old = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8";
        let c = config(&[("SESSION_ENCRYPTION_KEY", &format!("{new}, {old}"))]).unwrap();
        assert_eq!(c.session.encryption_keys.len(), 2);
        assert_eq!(c.session.encryption_keys[0].bytes()[0], 0xab);
        assert!(!format!("{c:?}").contains(new) && !format!("{c:?}").contains("ab, cd"));
        for bad in ["c2hvcnQ=", "not base64!"] {
            let secret = format!("{new},{bad}");
            let err = config(&[("SESSION_ENCRYPTION_KEY", &secret)]).unwrap_err();
            assert_eq!(err.var, "SESSION_ENCRYPTION_KEY");
            assert!(err.to_string().contains("key 2"), "{err}");
            assert!(!err.to_string().contains(new), "{err}");
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
            c.default_idp.backchannel_base_url.unwrap().origin(),
            "https://keycloak:8443"
        );
        let r = config(&[("SESSION_STORE", "redis://127.0.0.1:6379")]).unwrap();
        assert!(matches!(r.session.store, StoreUrl::Redis(_)));
        for url in [
            "postgres://gatehouse@db:5432/sessions",
            "postgresql://gatehouse@db/sessions?sslmode=verify-full",
        ] {
            let p = config(&[("SESSION_STORE", url)]).unwrap();
            assert!(matches!(p.session.store, StoreUrl::Postgres(_)), "{url}");
        }
        for hostless in ["postgres:///sessions", "postgres://"] {
            let err = config(&[("SESSION_STORE", hostless)]).unwrap_err();
            assert_eq!(err.var, "SESSION_STORE", "{hostless}");
        }
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
    fn remotes_may_name_the_resource_their_tokens_are_for() {
        let c = config(&[(
            "API_REMOTES",
            "reports=http://127.0.0.1:1/ GET aud=https://reports.example/; \
             inv=https://inv.example/ aud=urn:example:inv; \
             again=http://localhost:2/ aud=https://reports.example/ POST; plain=http://127.0.0.1:3/",
        )])
        .unwrap();
        let resources: Vec<Option<&str>> =
            c.remotes.iter().map(|r| r.resource.as_deref()).collect();
        assert_eq!(
            resources,
            [
                Some("https://reports.example/"),
                Some("urn:example:inv"),
                Some("https://reports.example/"),
                None
            ]
        );
        assert_eq!(
            c.remotes[1].methods,
            [axum::http::Method::GET, axum::http::Method::HEAD]
        );
        assert_eq!(c.remotes[2].methods, [axum::http::Method::POST]);
        assert_eq!(
            c.resources(),
            ["https://reports.example/", "urn:example:inv"]
        );
        for bad in [
            "r=http://127.0.0.1:1/ aud=reports",
            "r=http://127.0.0.1:1/ aud=https://r.example/#f",
            "r=http://127.0.0.1:1/ aud=https://r.example/?q=1",
        ] {
            assert_eq!(
                config(&[("API_REMOTES", bad)]).unwrap_err().var,
                "API_REMOTES",
                "{bad}"
            );
        }
    }

    #[test]
    fn scopes_are_deduplicated_and_openid_is_implicit() {
        let c = config(&[("OIDC_SCOPES", "openid email email profile")]).unwrap();
        let scopes: Vec<&str> = c.default_idp.scopes.iter().map(|s| s.as_str()).collect();
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
        assert_eq!(c.default_idp.name, DEFAULT_PROVIDER);
        assert_eq!(c.default_idp.label, "localhost:8080");
        let names: Vec<&str> = c.extra_idps.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["logto", "my-idp"]);
        let logto = &c.extra_idps[0];
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
        assert_eq!(c.extra_idps[1].label, "my-idp");
        assert!(c.default_idp.extra_auth_params.is_empty());
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
    fn a_store_password_never_appears_in_an_error() {
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
        for raw in [
            "postgres://u:hunter2@db/sessions",
            "postgres://u@db/sessions?sslmode=require&password=hunter2",
            "postgresql://u@[::1/s?password=hunter2",
            "postgres://u:hunter2@/sessions",
        ] {
            let err = config(&[("SESSION_STORE", raw)]).err();
            assert!(!format!("{err:?}").contains("hunter2"), "{raw}: {err:?}");
            assert!(!without_password(raw).contains("hunter2"), "{raw}");
        }
        assert_eq!(
            without_password("postgres://u@db/s?sslmode=require&password=hunter2"),
            "postgres://u@db/s?sslmode=require&password=***"
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
