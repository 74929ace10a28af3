//! The properties the fuzz targets check, one function per target. Each takes
//! the fuzzer's bytes and panics when Gatehouse's answer breaks the rule the
//! spec (or the contract) states; the rule is written out here independently
//! of the code under test, so an over-lenient *or* over-strict change is found.
//!
//! Used by `fuzz/fuzz_targets/*.rs` (cargo fuzz, nightly) and replayed over the
//! seed corpus in `fuzz/corpus/` by `tests/api/fuzz_corpus.rs` (stable,
//! part of `make test`).

use std::{
    sync::{Arc, OnceLock},
    time::{SystemTime, UNIX_EPOCH},
};

use arbitrary::{Arbitrary, Unstructured};
use axum::{
    extract::Query,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Uri},
};
use gatehouse::{
    auth::{
        csrf::{decide, Rule, Verdict},
        flow::{authorization_code, CallbackParams},
        idp::Idp,
        return_to::ReturnTo,
    },
    server::config::Config,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

const APP_ORIGIN: &str = "http://localhost:3000";
const ISSUER: &str = "http://localhost:8080/realms/demo";
const CLIENT_ID: &str = "gatehouse";
const CLIENT_SECRET: &str = "gatehouse-dev-secret";
const KID: &str = "fuzz-signing-key";
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

// ---------------------------------------------------------------- return_to

/// Whatever `return_to` a browser sends, the app redirects only to a path on
/// its own origin (RFC 9700 §4.11): the result is the input unchanged or `/`,
/// and a WHATWG URL parser (the `url` crate, as browsers parse) resolves it
/// against the app's origin to that same origin, never into `/auth/`.
pub fn return_to(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let result = ReturnTo::parse(Some(raw));
    let path = result.as_str();
    assert!(path == raw || path == "/", "{raw:?} became {path:?}");
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    let base = url::Url::parse(&format!("{APP_ORIGIN}/")).unwrap();
    let resolved = base.join(path).expect("a kept path always resolves");
    assert_eq!(
        resolved.origin().ascii_serialization(),
        APP_ORIGIN,
        "{raw:?} leaves the origin as {resolved}"
    );
    assert!(
        path == "/"
            || !(path == "/auth" || path.starts_with("/auth/") || path.starts_with("/auth?")),
        "{raw:?} leads back into the login endpoints"
    );
}

// ----------------------------------------------------------- callback query

/// Any query string on `/auth/callback`: parsing never panics, and a code is
/// only taken from a response that names our issuer (RFC 9207 §2.4; required
/// when the IdP advertises it), carries no `error`, and has a non-empty code.
pub fn callback_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    // Only what an HTTP request line can carry reaches the handler.
    let Ok(uri) = format!("/auth/callback?{query}").parse::<Uri>() else {
        return;
    };
    // The handler treats a malformed query like an empty one.
    let params = Query::<CallbackParams>::try_from_uri(&uri)
        .map(|Query(p)| p)
        .unwrap_or_default();
    for iss_required in [false, true] {
        let decision = authorization_code(&params, ISSUER, iss_required);
        let may_proceed = match params.iss.as_deref() {
            Some(iss) => iss == ISSUER,
            None => !iss_required,
        } && params.error.is_none()
            && params.code.as_deref().is_some_and(|c| !c.is_empty());
        match decision {
            Ok(code) => {
                assert!(
                    may_proceed,
                    "{query:?} (iss required: {iss_required}) accepted"
                );
                assert_eq!(Some(code.as_str()), params.code.as_deref());
            }
            Err(_) => assert!(
                !may_proceed,
                "{query:?} (iss required: {iss_required}) refused"
            ),
        }
    }
}

// ------------------------------------------------------------ CSRF decision

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    Known(u8),
    Token(String),
}

#[derive(Arbitrary, Debug)]
enum PathChoice {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum HeaderChoice {
    Known(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct CsrfInput {
    method: MethodChoice,
    path: PathChoice,
    origin: Option<HeaderChoice>,
    x_csrf: Option<HeaderChoice>,
    sec_fetch_site: Option<HeaderChoice>,
    authorization: Option<HeaderChoice>,
    cookie: bool,
}

const METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];
const PATHS: &[&str] = &[
    "/",
    "/profile",
    "/auth/login",
    "/auth/callback",
    "/auth/logout",
    "/auth/user",
    "/auth/userinfo",
    "/auth/backchannel-logout",
    "/auth/events",
    "/api",
    "/api/notes",
    "/api/notes/1",
    "/api/current_user",
    "/api/remote/reports/x",
];
const VALUES: &[&str] = &[
    APP_ORIGIN,
    "null",
    "https://evil.example",
    "http://localhost:3001",
    "http://localhost:3000.evil.example",
    "http://LOCALHOST:3000",
    "1",
    "0",
    "same-origin",
    "same-site",
    "cross-site",
    "none",
    "Bearer abc.def.ghi",
    "bearer x",
    "Bearer ",
    "Basic Z2F0ZWhvdXNl",
];

fn header_value(v: &HeaderChoice) -> Option<HeaderValue> {
    match v {
        HeaderChoice::Known(i) => {
            Some(HeaderValue::from_static(VALUES[*i as usize % VALUES.len()]))
        }
        HeaderChoice::Raw(bytes) => HeaderValue::from_bytes(bytes).ok(),
    }
}

/// The anti-forgery rule of the contract, per request: a request that rides
/// on the cookie and changes state or reads JSON is refused when it names
/// another origin (`Origin`, or Fetch Metadata `cross-site`/`same-site`) and
/// when it has neither `X-CSRF: 1` nor same-origin proof; the app's own calls
/// pass; navigations are never blocked; only the back-channel endpoint and
/// bearer calls without a cookie are exempt.
pub fn csrf_decision(data: &[u8]) {
    let Ok(input) = CsrfInput::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let method = match &input.method {
        MethodChoice::Known(i) => {
            Method::from_bytes(METHODS[*i as usize % METHODS.len()].as_bytes())
        }
        MethodChoice::Token(t) => Method::from_bytes(t.as_bytes()),
    };
    let Ok(method) = method else { return };
    let path = match &input.path {
        PathChoice::Known(i) => PATHS[*i as usize % PATHS.len()].to_string(),
        PathChoice::Any(p) => p.clone(),
    };
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, v: &Option<HeaderChoice>| {
        let value = v.as_ref().and_then(header_value);
        if let Some(value) = &value {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
        value
    };
    let origin = put("origin", &input.origin);
    let x_csrf = put("x-csrf", &input.x_csrf);
    let site = put("sec-fetch-site", &input.sec_fetch_site);
    let authorization = put("authorization", &input.authorization);
    if input.cookie {
        headers.insert("cookie", HeaderValue::from_static("gatehouse_session=abc"));
    }
    // The rule the router's groups give such a path (`auth::routes`,
    // `auth::json_group`, `server::build`): the fuzzed path only picks one.
    let json_read = path == "/auth/user"
        || path == "/auth/userinfo"
        || path == "/api"
        || path.starts_with("/api/");
    let rule = if path == "/auth/backchannel-logout" {
        Rule::ServerToServer
    } else if json_read {
        Rule::Json
    } else {
        Rule::Navigation
    };
    let verdict = decide(&method, rule, &headers, APP_ORIGIN);

    let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let bearer = authorization
        .as_ref()
        .is_some_and(|v| v.len() > 7 && v.as_bytes()[..7].eq_ignore_ascii_case(b"bearer "));
    let exempt = rule == Rule::ServerToServer || (bearer && !input.cookie);
    let protected = !safe || json_read;
    let is =
        |v: &Option<HeaderValue>, s: &str| v.as_ref().is_some_and(|v| v.as_bytes() == s.as_bytes());
    let foreign = origin
        .as_ref()
        .is_some_and(|o| o.as_bytes() != APP_ORIGIN.as_bytes())
        || is(&site, "cross-site")
        || is(&site, "same-site");
    let proof =
        is(&x_csrf, "1") || (!safe && (is(&origin, APP_ORIGIN) || is(&site, "same-origin")));
    let context = || format!("{method} {path:?} {headers:?} -> {verdict:?}");

    if !protected || exempt {
        assert_eq!(verdict, Verdict::Allow, "{}", context());
    } else if foreign || !proof {
        assert!(matches!(verdict, Verdict::Deny(_)), "{}", context());
    } else {
        assert_eq!(verdict, Verdict::Allow, "{}", context());
    }
}

// ------------------------------------------------------------- logout_token

#[derive(Arbitrary, Debug)]
enum Signing {
    Good,
    NoKid,
    Kid(String),
    AttackerKey,
    Hs256WithClientSecret,
    AlgNone,
    Tampered,
    Garbage(String),
}

#[derive(Arbitrary, Debug)]
enum Typ {
    LogoutJwt,
    Jwt,
    AtJwt,
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Ours,
    Other,
    Empty,
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Aud {
    One(Text),
    Many(Vec<Text>),
}

/// Times are 7-second steps around now (never within 3 s of the 60 s skew
/// boundary, so the verdict cannot depend on when the check runs), or raw.
#[derive(Arbitrary, Debug)]
enum Time {
    Steps(i8),
    Raw(u32),
    NotANumber(String),
}

#[derive(Arbitrary, Debug)]
enum Events {
    Good,
    GoodWithMore(String),
    MemberNotAnObject,
    Empty,
    NotAnObject(String),
}

#[derive(Arbitrary, Debug)]
enum ClaimValue {
    Str(String),
    Null,
    Number(i32),
}

#[derive(Arbitrary, Debug)]
struct LogoutInput {
    signing: Signing,
    typ: Option<Typ>,
    iss: Option<Text>,
    aud: Option<Aud>,
    iat: Option<Time>,
    exp: Option<Time>,
    nbf: Option<Time>,
    events: Option<Events>,
    sub: Option<ClaimValue>,
    sid: Option<ClaimValue>,
    nonce: Option<ClaimValue>,
    jti: Option<ClaimValue>,
}

fn text(t: &Text, ours: &str) -> String {
    match t {
        Text::Ours => ours.into(),
        Text::Other => format!("{ours}-other"),
        Text::Empty => String::new(),
        Text::Any(s) => s.clone(),
    }
}

fn time(t: &Time, now: i64) -> Value {
    match t {
        Time::Steps(n) => json!(now + 7 * i64::from(*n)),
        Time::Raw(n) => json!(n),
        Time::NotANumber(s) => json!(s),
    }
}

fn claim(c: &ClaimValue) -> Value {
    match c {
        ClaimValue::Str(s) => json!(s),
        ClaimValue::Null => Value::Null,
        ClaimValue::Number(n) => json!(n),
    }
}

struct Fixture {
    oidc: Idp,
    signing: EncodingKey,
    attacker: EncodingKey,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/keys");
        let keys = if std::path::Path::new(keys).exists() {
            keys.to_string()
        } else {
            // Replayed from the main crate's tests.
            concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/keys").to_string()
        };
        let read = |name: &str| std::fs::read_to_string(format!("{keys}/{name}")).unwrap();
        let env = |k: &str| match k {
            "OIDC_ISSUER_URL" => Some(ISSUER.to_string()),
            "SESSION_STORE" => Some("memory".to_string()),
            _ => None,
        };
        let config = Arc::new(Config::from_lookup(&env).expect("fuzz configuration"));
        let discovery = json!({
            "issuer": ISSUER,
            "authorization_endpoint": format!("{ISSUER}/protocol/openid-connect/auth"),
            "token_endpoint": format!("{ISSUER}/protocol/openid-connect/token"),
            // Nothing listens on the discard port: an unknown kid's one JWKS
            // re-fetch fails at once, as with an IdP that is down.
            "jwks_uri": "http://127.0.0.1:9/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        });
        let oidc = Idp::with_discovery(
            config.clone(),
            config.default_idp.clone(),
            &discovery.to_string(),
            &read("jwks.json"),
        )
        .expect("fuzz discovery");
        Fixture {
            oidc,
            signing: EncodingKey::from_rsa_pem(read("signing.pem").as_bytes()).unwrap(),
            attacker: EncodingKey::from_rsa_pem(read("attacker.pem").as_bytes()).unwrap(),
        }
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A back-channel `logout_token` is accepted exactly when Back-Channel Logout
/// 1.0 §2.6 says so (the `jti` replay check aside, which needs the store):
/// RS256 by the IdP's key (found by `kid`, or the only key when there is no
/// `kid`), `typ` absent or `logout+jwt`/`JWT`, `iss` exactly ours, our client
/// in `aud`, `exp` not past and `nbf` not ahead (60 s skew), a numeric `iat`
/// not ahead, the back-channel-logout event as an object, a non-empty `sub`
/// or `sid` (each a string when present), no `nonce` at all, a non-empty `jti`.
pub fn logout_token(data: &[u8]) {
    let Ok(input) = LogoutInput::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let fx = fixture();
    let now = unix_now();
    let mut payload = Map::new();
    if let Some(iss) = &input.iss {
        payload.insert("iss".into(), json!(text(iss, ISSUER)));
    }
    let audiences: Vec<String> = match &input.aud {
        None => vec![],
        Some(Aud::One(t)) => {
            let a = text(t, CLIENT_ID);
            payload.insert("aud".into(), json!(a));
            vec![a]
        }
        Some(Aud::Many(ts)) => {
            let all: Vec<String> = ts.iter().map(|t| text(t, CLIENT_ID)).collect();
            payload.insert("aud".into(), json!(all));
            all
        }
    };
    for (name, t) in [
        ("iat", &input.iat),
        ("exp", &input.exp),
        ("nbf", &input.nbf),
    ] {
        if let Some(t) = t {
            payload.insert(name.into(), time(t, now));
        }
    }
    if let Some(events) = &input.events {
        let value = match events {
            Events::Good => json!({ BACKCHANNEL_EVENT: {} }),
            Events::GoodWithMore(other) => json!({ BACKCHANNEL_EVENT: {}, other.clone(): 1 }),
            Events::MemberNotAnObject => json!({ BACKCHANNEL_EVENT: "yes" }),
            Events::Empty => json!({}),
            Events::NotAnObject(s) => json!(s),
        };
        payload.insert("events".into(), value);
    }
    for (name, c) in [
        ("sub", &input.sub),
        ("sid", &input.sid),
        ("nonce", &input.nonce),
        ("jti", &input.jti),
    ] {
        if let Some(c) = c {
            payload.insert(name.into(), claim(c));
        }
    }
    let payload = Value::Object(payload);

    let mut header = Header::new(Algorithm::RS256);
    header.typ = match &input.typ {
        None => None,
        Some(Typ::LogoutJwt) => Some("logout+jwt".into()),
        Some(Typ::Jwt) => Some("JWT".into()),
        Some(Typ::AtJwt) => Some("at+jwt".into()),
        Some(Typ::Any(s)) => Some(s.clone()),
    };
    header.kid = Some(KID.into());
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let sign =
        |header: &Header, key: &EncodingKey| jsonwebtoken::encode(header, &payload, key).ok();
    let (token, right_key) = match &input.signing {
        Signing::Good => (sign(&header, &fx.signing), true),
        Signing::NoKid => {
            header.kid = None;
            (sign(&header, &fx.signing), true)
        }
        Signing::Kid(kid) => {
            header.kid = Some(kid.clone());
            (sign(&header, &fx.signing), kid == KID)
        }
        Signing::AttackerKey => (sign(&header, &fx.attacker), false),
        Signing::Hs256WithClientSecret => {
            header.alg = Algorithm::HS256;
            (
                sign(&header, &EncodingKey::from_secret(CLIENT_SECRET.as_bytes())),
                false,
            )
        }
        Signing::AlgNone => {
            let head = json!({ "alg": "none", "typ": header.typ, "kid": KID });
            (
                Some(format!(
                    "{}.{}.",
                    b64(head.to_string().as_bytes()),
                    b64(payload.to_string().as_bytes())
                )),
                false,
            )
        }
        Signing::Tampered => {
            let token = sign(&header, &fx.signing);
            let forged = json!({ "sub": "someone-else", "iss": ISSUER, "aud": CLIENT_ID });
            let token = token.map(|t| {
                let parts: Vec<&str> = t.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(forged.to_string().as_bytes()),
                    parts[2]
                )
            });
            (token, false)
        }
        Signing::Garbage(s) => (Some(s.clone()), false),
    };
    let Some(token) = token else { return };

    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    let verdict = RUNTIME.with(|rt| rt.block_on(fx.oidc.verify_logout_token(&token)));

    let field = |name: &str| payload.get(name);
    let number = |name: &str| field(name).and_then(Value::as_i64);
    let typ_ok = header
        .typ
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case("logout+jwt") || t.eq_ignore_ascii_case("JWT"));
    let non_empty_string = |name: &str| {
        field(name)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let string_or_null_or_absent =
        |name: &str| field(name).is_none_or(|v| v.is_string() || v.is_null());
    let should_accept = right_key
        && typ_ok
        && field("iss").and_then(Value::as_str) == Some(ISSUER)
        && audiences.iter().any(|a| a == CLIENT_ID)
        && number("exp").is_some_and(|exp| exp >= now - 60)
        && field("nbf").is_none_or(|_| number("nbf").is_some_and(|nbf| nbf <= now + 60))
        && number("iat").is_some_and(|iat| iat <= now + 60)
        && field("events")
            .and_then(|e| e.get(BACKCHANNEL_EVENT))
            .is_some_and(Value::is_object)
        && string_or_null_or_absent("sub")
        && string_or_null_or_absent("sid")
        && (non_empty_string("sub") || non_empty_string("sid"))
        && field("nonce").is_none()
        && non_empty_string("jti");
    match verdict {
        Ok(claims) => {
            assert!(
                should_accept,
                "accepted: {token}\npayload {payload}\nheader {header:?}"
            );
            assert!(claims.sub.is_some() || claims.sid.is_some());
        }
        Err(e) => assert!(
            !should_accept,
            "refused ({e}): {token}\npayload {payload}\nheader {header:?}"
        ),
    }
}
