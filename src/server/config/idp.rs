//! One identity provider's variables: `OIDC_*` for the default provider,
//! `OIDC_<NAME>_*` for each one named in `OIDC_PROVIDERS`.

use openidconnect::{ClientId, ClientSecret, IssuerUrl, Scope};
use url::Url;

use super::{values::BaseUrl, ConfigError, Lookup, Reader};
use crate::auth::{claims::ClaimPath, es256::Es256Key};

#[derive(Clone, Debug)]
pub struct IdpConfig {
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
    /// Pushed authorization requests (RFC 9126).
    pub par: ParMode,
    /// How this client authenticates to the IdP's token, PAR and revocation
    /// endpoints.
    pub client_auth: ClientAuth,
    /// DPoP (RFC 9449): ask for access tokens bound to the session's key.
    pub dpop: bool,
}

/// Client authentication (OIDC Core §9, RFC 6749 §2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: id and secret in HTTP Basic (the default).
    SecretBasic,
    /// `client_secret_post`: id and secret in the form.
    SecretPost,
    /// `private_key_jwt` (RFC 7523): a short-lived JWT signed with this key;
    /// no secret is sent.
    PrivateKeyJwt(ClientKey),
}

/// A private key for `private_key_jwt`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// RSA as PKCS#1 PEM (read from PKCS#1 or PKCS#8 PEM, or a JWK),
    /// signing RS256 or PS256.
    Rsa {
        pem: std::sync::Arc<str>,
        alg: RsaAlg,
    },
    /// P-256, signing ES256.
    Ec(Es256Key),
}

/// How an RSA client key signs its assertions (RFC 7518 §3.3, §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 (what FAPI 2.0 profiles and some IdPs ask for).
    Ps256,
}

impl RsaAlg {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

/// The private key at `path`: in PEM, RSA (PKCS#1 or PKCS#8) of at least
/// 2048 bits or P-256 (PKCS#8 or SEC1); or a private JWK (RFC 7517/7518:
/// RSA with `n`, `e`, `d`, `p`, `q`, or EC P-256 with `d`, `x`, `y`).
/// `alg` (`…CLIENT_KEY_ALG`, else a JWK's own `alg`, else RS256 for RSA)
/// must suit the key: RS256 or PS256 for RSA, ES256 for P-256.
fn read_client_key(path: &str, alg: Option<&str>) -> Result<ClientKey, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (key, jwk_alg) = if text.trim_start().starts_with('{') {
        read_jwk(&text)?
    } else if let Ok(rsa) = rsa::RsaPrivateKey::from_pkcs1_pem(&text)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(&text))
    {
        (PrivateKey::Rsa(Box::new(rsa)), None)
    } else {
        let ec = Es256Key::from_pem(&text).ok_or(
            "not an RSA or P-256 private key in PEM (PKCS#1, PKCS#8 or SEC1) or a private JWK",
        )?;
        (PrivateKey::Ec(ec), None)
    };
    match (key, alg.or(jwk_alg.as_deref())) {
        (PrivateKey::Ec(key), None | Some("ES256")) => Ok(ClientKey::Ec(key)),
        (PrivateKey::Rsa(key), alg @ (None | Some("RS256" | "PS256"))) => {
            use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
            if key.size() < 256 {
                return Err("the RSA key is shorter than 2048 bits".into());
            }
            let pem = key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .map_err(|e| e.to_string())?;
            let alg = match alg {
                Some("PS256") => RsaAlg::Ps256,
                _ => RsaAlg::Rs256,
            };
            Ok(ClientKey::Rsa {
                pem: std::sync::Arc::from(pem.as_str()),
                alg,
            })
        }
        (PrivateKey::Ec(_), Some(alg)) => Err(format!("a P-256 key signs ES256, not {alg}")),
        (PrivateKey::Rsa(_), Some(alg)) => {
            Err(format!("an RSA key signs RS256 or PS256, not {alg}"))
        }
    }
}

enum PrivateKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ec(Es256Key),
}

/// A private key as a JWK, and the `alg` it names.
fn read_jwk(text: &str) -> Result<(PrivateKey, Option<String>), String> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let jwk: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a JWK: {e}"))?;
    let member = |name: &str| -> Result<Vec<u8>, String> {
        let value = jwk[name]
            .as_str()
            .ok_or_else(|| format!("the JWK has no {name:?}: a private key is needed"))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("the JWK's {name:?} is not base64url"))
    };
    let alg = jwk["alg"].as_str().map(str::to_string);
    let key = match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("RSA"), _) => {
            let int = |name: &str| member(name).map(|b| rsa::BigUint::from_bytes_be(&b));
            let key = rsa::RsaPrivateKey::from_components(
                int("n")?,
                int("e")?,
                int("d")?,
                vec![int("p")?, int("q")?],
            )
            .map_err(|e| format!("not a usable RSA key: {e}"))?;
            key.validate()
                .map_err(|e| format!("not a usable RSA key: {e}"))?;
            PrivateKey::Rsa(Box::new(key))
        }
        (Some("EC"), Some("P-256")) => {
            let key = Es256Key::from_scalar(&member("d")?).ok_or("not a P-256 private key")?;
            let public = key.public_jwk();
            if jwk["x"] != public["x"] || jwk["y"] != public["y"] {
                return Err("the JWK's x and y are not the public half of its d".into());
            }
            PrivateKey::Ec(key)
        }
        _ => return Err("only RSA and EC P-256 JWKs are supported".into()),
    };
    Ok((key, alg))
}

/// Whether a login pushes its authorization request to the IdP first
/// (RFC 9126) and sends the browser only `client_id` and `request_uri`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParMode {
    /// When discovery names a `pushed_authorization_request_endpoint`.
    #[default]
    Auto,
    /// Always; a login against an IdP without PAR fails (misconfigured).
    Required,
    /// Never; a login against an IdP that requires PAR fails (misconfigured).
    Off,
}

/// `OIDC_` for the default provider, `OIDC_<NAME>_` for one named in `OIDC_PROVIDERS`.
pub(super) fn provider_prefix(name: Option<&str>) -> String {
    match name {
        None => "OIDC_".into(),
        Some(n) => format!("OIDC_{}_", n.to_ascii_uppercase().replace('-', "_")),
    }
}

/// One provider's variables. The default provider has development defaults;
/// a named one must give its issuer, client id and secret.
pub(super) fn read_provider<L: Lookup>(
    r: &Reader<'_, L>,
    name: Option<&str>,
    refresh_leeway: time::Duration,
) -> Result<IdpConfig, ConfigError> {
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
    let client_auth = match r
        .parse(
            &var("CLIENT_AUTH"),
            "client_secret_basic",
            "client_secret_basic, client_secret_post or private_key_jwt",
            |v| match v {
                "client_secret_basic" | "client_secret_post" | "private_key_jwt" => {
                    Ok(v.to_string())
                }
                _ => Err("not one of them".to_string()),
            },
        )?
        .as_str()
    {
        "client_secret_post" => ClientAuth::SecretPost,
        "private_key_jwt" => {
            let Some(path) = r.optional(&var("CLIENT_KEY_FILE")) else {
                return Err(ConfigError {
                    var: var("CLIENT_KEY_FILE"),
                    value: String::new(),
                    expected: format!(
                        "a PEM file with an RSA private key: {} is private_key_jwt",
                        var("CLIENT_AUTH")
                    ),
                });
            };
            let alg = r.optional(&var("CLIENT_KEY_ALG"));
            if let Some(alg) = &alg {
                r.parse(
                    &var("CLIENT_KEY_ALG"),
                    alg,
                    "RS256, PS256 or ES256",
                    |v| match v {
                        "RS256" | "PS256" | "ES256" => Ok(()),
                        _ => Err("not one of them".to_string()),
                    },
                )?;
            }
            ClientAuth::PrivateKeyJwt(r.parse(
                &var("CLIENT_KEY_FILE"),
                &path,
                "a private key in PEM (RSA, PKCS#1 or PKCS#8, 2048 bits or more; \
                 P-256, PKCS#8 or SEC1) or a private JWK, for the signing algorithm",
                |path| read_client_key(path, alg.as_deref()),
            )?)
        }
        _ => ClientAuth::SecretBasic,
    };
    if !matches!(client_auth, ClientAuth::PrivateKeyJwt(_)) {
        required("CLIENT_SECRET")?;
    }
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
    let par = r.parse(&var("PAR"), "auto", "auto, required or off", |v| match v {
        "auto" => Ok(ParMode::Auto),
        "required" => Ok(ParMode::Required),
        "off" => Ok(ParMode::Off),
        _ => Err("not one of them".to_string()),
    })?;
    let dpop = r.parse(
        &var("DPOP"),
        "0",
        "1 (on) or 0 (off)",
        super::values::parse_flag,
    )?;
    let default_label = Url::parse(issuer.as_str())
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| issuer.to_string());
    let label = r.raw(&var("LABEL"), name.unwrap_or(&default_label));
    Ok(IdpConfig {
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
        par,
        client_auth,
        dpop,
    })
}

/// The development client secret, which is public (it is in this repository).
pub const DEV_CLIENT_SECRET: &str = "gatehouse-dev-secret";

/// The name of the provider the unprefixed `OIDC_*` variables configure.
pub const DEFAULT_PROVIDER: &str = "default";

pub(super) fn parse_provider_names(raw: &str) -> Result<Vec<String>, String> {
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
pub(super) const PROTOCOL_PARAMS: &[&str] = &[
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

pub(super) fn parse_extra_auth_params(raw: &str) -> Result<Vec<(String, String)>, String> {
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

pub(super) fn parse_scopes(raw: &str) -> Result<Vec<Scope>, String> {
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
