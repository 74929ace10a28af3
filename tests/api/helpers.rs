//! Black-box test harness (zero2prod style): the real app on a random port, the
//! real dev identity provider as a child process, and an HTTP client with a
//! cookie jar that walks redirects by hand so every hop can be inspected.

use std::{
    collections::HashMap,
    net::TcpListener as StdListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use gatehouse::server::{self, clock::Clock, config::Config};
use leptos::config::LeptosOptions;
use reqwest::{cookie::CookieStore, cookie::Jar, header, redirect, Response, StatusCode};
use url::Url;

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const STALLED: &str = "did not answer";
static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The state letter and name of a process, from `/proc/<pid>/status`.
fn process_state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("State:"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The local addresses with a TCP socket in LISTEN state on `port`
/// (`/proc/net/tcp` and `tcp6`), to tell a port held elsewhere from a stall.
fn listeners_on(port: u16) -> String {
    let wanted = format!(":{port:04X}");
    let found: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 9 && cols[1].ends_with(&wanted) && cols[3] == "0A"
        })
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

/// The dev identity provider (`end2end/idp/server.mjs`), killed on drop.
pub struct Idp {
    pub host: String,
    pub port: u16,
    pub issuer: String,
    child: Child,
}

impl Idp {
    /// The node process' id (`make bench` reads its CPU time).
    #[allow(dead_code)] // not every test binary uses it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// On a free port.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// On a free port, with extra environment. A port picked free can be taken
    /// by another process before node binds it, and a start can stall on a
    /// loaded machine: either way the start is retried on a fresh port.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start_at("127.0.0.1", free_port(), env).await {
                Ok(idp) => return idp,
                Err(why) => failures.push(why),
            }
        }
        panic!("the dev IdP did not start: {}", failures.join("\n---\n"));
    }

    /// On a port the test needs (an IdP restarted where the app expects it).
    pub async fn start_on(port: u16, env: &[(&str, &str)]) -> Self {
        Self::start_at("127.0.0.1", port, env).await
    }

    /// On another loopback address (`IDP_LISTEN_HOST`), for split-network tests.
    /// The port is fixed, so only a stalled start (node alive, not answering)
    /// is retried; a taken port fails at once.
    pub async fn start_at(host: &str, port: u16, env: &[(&str, &str)]) -> Self {
        let mut failures = Vec::new();
        for _ in 0..2 {
            match Self::try_start_at(host, port, env).await {
                Ok(idp) => return idp,
                Err(why) if why.contains(STALLED) => failures.push(why),
                Err(why) => panic!("{why}"),
            }
        }
        panic!("the dev IdP did not start: {}", failures.join("\n---\n"));
    }

    /// Starts node and waits for `/dev/health`. Node's stderr goes to a file so
    /// that a failed start says why; a start that does not answer in time is
    /// killed and described (process state, whether anything listens on the
    /// port, the last health-check error), so a flaky start can be diagnosed.
    async fn try_start_at(host: &str, port: u16, env: &[(&str, &str)]) -> Result<Self, String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/end2end/idp/server.mjs");
        let log_path = std::env::temp_dir().join(format!(
            "gatehouse-test-idp-{}-{host}-{port}-{}.log",
            std::process::id(),
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let log = std::fs::File::create(&log_path).expect("create the dev IdP log file");
        let child = Command::new("node")
            .arg(script)
            .env("IDP_PORT", port.to_string())
            .env("IDP_LISTEN_HOST", host)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("node must be installed (make test runs scripts/setup.sh)");
        let mut idp = Self {
            host: host.to_string(),
            port,
            issuer: format!("http://localhost:{port}/realms/demo"),
            child,
        };
        let health = format!("http://{host}:{port}/dev/health");
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let started = std::time::Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < Duration::from_secs(20) {
            match probe.get(&health).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = std::fs::remove_file(&log_path);
                    return Ok(idp);
                }
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = format!("{e:?}"),
            }
            if let Ok(Some(status)) = idp.child.try_wait() {
                let why = log_text();
                let _ = std::fs::remove_file(&log_path);
                return Err(format!(
                    "the dev IdP on {host}:{port} exited ({status}) before answering: {why}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let why = format!(
            "the dev IdP {STALLED} on {host}:{port} within 20 s; process state: {}; \
             listening on the port: {}; last health check: {last}; its stderr: {}",
            process_state(idp.child.id()),
            listeners_on(port),
            log_text()
        );
        let _ = std::fs::remove_file(&log_path);
        Err(why)
    }

    /// Replaces a user's roles at the IdP, as its administrator would (needs
    /// `IDP_EXPOSE_TOKENS_FOR_TESTS=1`).
    pub async fn set_roles(&self, username: &str, roles: &[&str]) {
        let response = reqwest::Client::new()
            .put(format!(
                "http://{}:{}/dev/users/{username}/roles",
                self.host, self.port
            ))
            .json(&serde_json::json!({ "roles": roles }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "the IdP's role hook");
    }

    /// The refresh tokens the IdP issued to the BFF, oldest first (needs
    /// `IDP_EXPOSE_TOKENS_FOR_TESTS=1`).
    pub async fn issued_refresh_tokens(&self) -> Vec<String> {
        self.issued_refresh_tokens_of("gatehouse").await
    }

    /// [`issued_refresh_tokens`](Self::issued_refresh_tokens) to the client `client_id`.
    pub async fn issued_refresh_tokens_of(&self, client_id: &str) -> Vec<String> {
        let issued: serde_json::Value = reqwest::get(format!(
            "http://{}:{}/dev/issued-tokens",
            self.host, self.port
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        issued["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["client_id"] == client_id)
            .filter_map(|t| t["refresh_token"].as_str().map(str::to_string))
            .collect()
    }

    /// Whether the IdP still takes `token` (RFC 7662 introspection, as the
    /// BFF's client).
    pub async fn token_active(&self, token: &str) -> bool {
        let answer = self
            .post_form(
                "/protocol/openid-connect/token/introspect",
                ("gatehouse", "gatehouse-dev-secret"),
                &[("token", token)],
            )
            .await;
        answer["active"]
            .as_bool()
            .unwrap_or_else(|| panic!("introspection answered {answer}"))
    }

    /// A form POST to the IdP's `path` as the client `(id, secret)`
    /// (`client_secret_basic`); its JSON answer.
    pub async fn post_form(
        &self,
        path: &str,
        (id, secret): (&str, &str),
        form: &[(&str, &str)],
    ) -> serde_json::Value {
        reqwest::Client::new()
            .post(format!(
                "{}{path}",
                self.issuer.replace("localhost", &self.host)
            ))
            .basic_auth(id, Some(secret))
            .form(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Whether `token` stops being active within 5 s (revocation at
    /// sign-out runs in the background).
    pub async fn revoked_soon(&self, token: &str) -> bool {
        for _ in 0..50 {
            if !self.token_active(token).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}:{}/dev/stats", self.host, self.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Gatehouse and a browser-like client for it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
    /// The app's clock for every expiry: move it forward (`app.wait(…)`)
    /// instead of sleeping until a token or a session has expired. For an
    /// app this harness did not start, the system clock (which cannot move).
    pub clock: Clock,
}

pub async fn spawn_app(issuer: &str) -> TestApp {
    spawn_app_with(issuer, &[]).await
}

pub async fn spawn_app_with(issuer: &str, overrides: &[(&str, &str)]) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://localhost:{}", addr.port());
    let mut env: HashMap<String, String> = [
        ("APP_BASE_URL", base.as_str()),
        ("LEPTOS_SITE_ADDR", &addr.to_string()),
        ("OIDC_ISSUER_URL", issuer),
        ("SESSION_STORE", "memory"),
        ("APP_DATABASE_URL", "sqlite::memory:"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    let config = Config::from_lookup(&move |k: &str| env.get(k).cloned()).expect("test config");
    let options = LeptosOptions::builder()
        .output_name("gatehouse")
        // Static files from the source tree, not from `target/site`: this suite
        // must not depend on a cargo-leptos build having run before it (on a
        // fresh clone nothing has built `target/site` yet). The one static
        // file the tests fetch, `/favicon.svg`, is in `public/` as shipped.
        .site_root(concat!(env!("CARGO_MANIFEST_DIR"), "/public"))
        .site_addr(addr)
        .build();
    let clock = Clock::adjustable();
    let router = server::build_with_clock(config, options, clock.clone())
        .await
        .expect("app builds")
        .router;
    tokio::spawn(async move {
        use axum::ServiceExt as _;
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let (http, jar) = browser();
    TestApp {
        base,
        http,
        jar,
        clock,
    }
}

impl TestApp {
    /// This app as seen by a browser on another network: `localhost` resolves
    /// to `addrs` in order (the app itself listens on 127.0.0.1).
    pub fn with_browser_resolving_localhost_to(mut self, addrs: &[std::net::IpAddr]) -> Self {
        let jar = Arc::new(Jar::default());
        let addrs: Vec<std::net::SocketAddr> = addrs
            .iter()
            .map(|ip| std::net::SocketAddr::new(*ip, 0))
            .collect();
        self.http = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .cookie_provider(jar.clone())
            .timeout(Duration::from_secs(60))
            .resolve_to_addrs("localhost", &addrs)
            .build()
            .unwrap();
        self.jar = jar;
        self
    }
}

/// A browser-like client: its own cookie jar, redirects walked by hand. A
/// response (body included) that takes a minute is a hang, and fails the test
/// instead of stalling the whole run.
pub fn browser() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .cookie_provider(jar.clone())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    (http, jar)
}

pub fn location(response: &Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location on {} {}", response.status(), response.url()))
        .to_str()
        .unwrap()
        .to_string()
}

/// The value of `name` in the query of `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` with query parameter `name` replaced by `value` (or removed when `None`).
pub fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut parsed = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = parsed.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    parsed.to_string()
}

/// What the IdP's login step ended with.
pub enum IdpOutcome {
    /// Redirected back to the app's callback (the full URL, not yet requested).
    Callback(String),
    /// Still on the IdP, showing this HTML (e.g. wrong password).
    StayedOnIdp(String),
}

impl TestApp {
    /// A browser for an app that is already running at `base` (`make bench`
    /// drives the release binary as its own process).
    #[allow(dead_code)] // only benches/bff.rs calls it
    pub fn at(base: &str) -> TestApp {
        let (http, jar) = browser();
        TestApp {
            base: base.to_string(),
            http,
            jar,
            clock: Clock::system(),
        }
    }

    /// Lets `span` pass for the app: its clock moves forward, at once.
    #[allow(dead_code)] // not every test binary uses it
    pub fn wait(&self, span: Duration) {
        self.clock.advance(span);
    }

    /// Another browser (its own cookie jar) on the same app.
    pub fn second_browser(&self) -> TestApp {
        let (http, jar) = browser();
        TestApp {
            base: self.base.clone(),
            http,
            jar,
            clock: self.clock.clone(),
        }
    }

    /// Calls a server function the way the app's own client does.
    pub async fn server_fn(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(path))
            .header("X-CSRF", "1")
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// A page navigation as a browser makes it (`Accept: text/html`).
    pub async fn get_page(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap()
    }

    /// A JSON call from this browser to another instance (cookies ignore the
    /// port, so this browser's session cookie goes along).
    pub async fn get_json_at(&self, other: &TestApp, path: &str) -> Response {
        self.http
            .get(other.url(path))
            .header("X-CSRF", "1")
            .send()
            .await
            .unwrap()
    }

    /// A JSON call as the app's own front end makes it (with `X-CSRF: 1`).
    pub async fn get_json(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .header("X-CSRF", "1")
            .send()
            .await
            .unwrap()
    }

    pub fn session_cookie(&self) -> Option<String> {
        let url = Url::parse(&self.base).unwrap();
        let cookies = self.jar.cookies(&url)?;
        cookies
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("gatehouse_session=").map(str::to_string))
    }

    /// `GET /auth/login?return_to=…` → the IdP authorization URL it redirects to.
    pub async fn start_login(&self, return_to: Option<&str>) -> String {
        let path = match return_to {
            Some(r) => format!(
                "/auth/login?return_to={}",
                url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
            ),
            None => "/auth/login".to_string(),
        };
        let response = self.get(&path).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "login must redirect"
        );
        location(&response)
    }

    /// Whether `/auth/user` turns 401 within `tries` polls 100 ms apart (a
    /// back-channel logout arrives asynchronously).
    pub async fn signed_out_within(&self, tries: u32) -> bool {
        for _ in 0..tries {
            if self.get_json("/auth/user").await.status() == StatusCode::UNAUTHORIZED {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// `GET /auth/login?idp=<name>` → the authorization URL of that provider.
    pub async fn start_login_at(&self, idp: &str) -> String {
        let response = self.get(&format!("/auth/login?idp={idp}")).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "login must redirect"
        );
        location(&response)
    }

    /// Drives the IdP from `authorize_url`: follows its redirects and fills its
    /// login form with `username`/`password`, until it sends the browser back
    /// to the app or answers the form with a page instead of a redirect.
    pub async fn at_idp(&self, authorize_url: &str, username: &str, password: &str) -> IdpOutcome {
        let mut current = authorize_url.to_string();
        for _ in 0..20 {
            if current.starts_with(&self.base) {
                return IdpOutcome::Callback(current);
            }
            let response = self.http.get(&current).send().await.unwrap();
            if response.status().is_redirection() {
                current = resolve(&current, &location(&response));
                continue;
            }
            let page_url = response.url().to_string();
            let html = response.text().await.unwrap();
            let action =
                form_action(&html).unwrap_or_else(|| panic!("no login form at {page_url}: {html}"));
            // The login form gets the credentials; any other form (the
            // IdP's auto-submitting "end the other user's session first"
            // when someone else signs in) is sent as it is.
            let mut inputs = form_inputs(&html);
            if inputs.iter().any(|(name, _)| name == "username") {
                inputs.retain(|(name, _)| name != "username" && name != "password");
                inputs.push(("username".into(), username.into()));
                inputs.push(("password".into(), password.into()));
            }
            let response = self
                .http
                .post(resolve(&page_url, &action))
                .form(&inputs)
                .send()
                .await
                .unwrap();
            if response.status().is_redirection() {
                current = resolve(&page_url, &location(&response));
                continue;
            }
            return IdpOutcome::StayedOnIdp(response.text().await.unwrap());
        }
        panic!("too many redirects at the IdP");
    }

    /// [`at_idp`](Self::at_idp) that must come back: the app's callback URL.
    pub async fn back_from_idp(
        &self,
        authorize_url: &str,
        username: &str,
        password: &str,
    ) -> String {
        match self.at_idp(authorize_url, username, password).await {
            IdpOutcome::Callback(url) => url,
            IdpOutcome::StayedOnIdp(html) => panic!("login did not complete: {html}"),
        }
    }

    /// The whole login: app → IdP → credentials → the app's callback URL.
    pub async fn callback_url_for(
        &self,
        username: &str,
        password: &str,
        return_to: Option<&str>,
    ) -> String {
        let authorize = self.start_login(return_to).await;
        self.back_from_idp(&authorize, username, password).await
    }

    /// Logs in and returns the callback's response (a 303 on success).
    pub async fn login(&self, username: &str, password: &str) -> Response {
        let callback = self.callback_url_for(username, password, None).await;
        self.http.get(callback).send().await.unwrap()
    }

    /// `POST /auth/logout` as the sign-out form sends it.
    pub async fn logout(&self) -> Response {
        self.http
            .post(self.url("/auth/logout"))
            .header(header::ORIGIN, &self.base)
            .send()
            .await
            .unwrap()
    }
}

/// The named inputs of a page's form and their values, in order.
fn form_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|i| {
            let name = i.split("name=\"").nth(1)?.split('"').next()?.to_string();
            let value = i
                .split("value=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("")
                .to_string();
            Some((name, value))
        })
        .collect()
}

/// Walks an IdP end-session URL the way a browser does: follows redirects and
/// submits the dev IdP's (auto-submitting) confirmation form. Returns the URL
/// it ends on.
pub async fn walk_idp_logout(http: &reqwest::Client, start: &str) -> String {
    let mut current = start.to_string();
    for _ in 0..10 {
        let response = http.get(&current).send().await.unwrap();
        if response.status().is_redirection() {
            current = resolve(&current, &location(&response));
            if !current.contains("/realms/") {
                return current;
            }
            continue;
        }
        let html = response.text().await.unwrap();
        let Some(action) = form_action(&html) else {
            return current;
        };
        let inputs = form_inputs(&html);
        let target = resolve(&current, &action);
        let response = http.post(&target).form(&inputs).send().await.unwrap();
        if !response.status().is_redirection() {
            return target;
        }
        current = resolve(&target, &location(&response));
        if !current.contains("/realms/") {
            return current;
        }
    }
    panic!("the IdP logout did not finish");
}

fn resolve(base: &str, location: &str) -> String {
    Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

fn form_action(html: &str) -> Option<String> {
    let start = html.find("<form")?;
    let rest = &html[start..];
    let a = rest.find("action=\"")? + "action=\"".len();
    let end = rest[a..].find('"')?;
    Some(rest[a..a + end].replace("&amp;", "&"))
}

/// True when `text` contains something shaped like a JWT (three base64url parts,
/// the first starting `eyJ`).
pub fn contains_jwt(text: &str) -> bool {
    text.match_indices("eyJ").any(|(i, _)| {
        let candidate: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        candidate.split('.').filter(|p| !p.is_empty()).count() >= 3
    })
}

/// A real `redis-server` (Debian package) on a free port, killed on drop.
pub struct Redis {
    pub url: String,
    child: Child,
}

impl Redis {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make test runs scripts/setup.sh)");
        // Owned by `redis` at once, so Drop reaps the child on every path.
        let redis = Self {
            url: format!("redis://127.0.0.1:{port}"),
            child,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    /// One command, in Redis' wire protocol, on a connection of its own;
    /// returns the reply line. (`ACL SETUSER default -<command>` makes the
    /// store refuse that command from then on: a store that fails.)
    pub async fn command(&self, args: &[&str]) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let addr = self.url.trim_start_matches("redis://");
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        BufReader::new(socket).read_line(&mut line).await.unwrap();
        line
    }
}

impl Redis {
    /// The server's process id (a test stops it with SIGSTOP: a store that
    /// accepts connections and never answers).
    #[allow(dead_code)] // not every test binary uses it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many commands this server has run, `INFO` itself left out (from
    /// `INFO commandstats`): what a test compares before and after a window
    /// in which the app should not touch the store.
    #[allow(dead_code)] // not every test binary uses it
    pub fn commands_run(&self) -> u64 {
        let out = Command::new("redis-cli")
            .args(["-u", &self.url, "INFO", "commandstats"])
            .output()
            .expect("redis-cli is installed with redis-server");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
            .filter_map(|line| {
                line.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real PostgreSQL server (Debian's package), one per test process,
/// started on first use in a directory of its own on a free port
/// (`initdb` + `pg_ctl`, as the `postgres` user when the tests run as root:
/// Postgres refuses to run as root). Each test gets a database of its own
/// ([`PostgresServer::database`]). A watcher process stops the server and
/// removes its directory once the test process is gone, however it ended.
pub struct PostgresServer {
    port: u16,
    bin: std::path::PathBuf,
}

/// Debian installs the server outside PATH, under its major version.
fn postgres_bin() -> std::path::PathBuf {
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect(
        "PostgreSQL's server must be installed (Debian package `postgresql`; \
         make test runs scripts/setup.sh)",
    )
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` from Postgres' bin directory, as the `postgres` user when root.
fn postgres_command(bin: &std::path::Path, program: &str) -> Command {
    let program = bin.join(program);
    let mut command = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run_ok(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PostgresServer {
    /// The server of this test process.
    pub fn get() -> &'static PostgresServer {
        static SERVER: std::sync::OnceLock<PostgresServer> = std::sync::OnceLock::new();
        SERVER.get_or_init(Self::start)
    }

    // The watcher outlives this process on purpose: it is never waited for
    // (it cannot end before this process does).
    #[allow(clippy::zombie_processes)]
    fn start() -> Self {
        let bin = postgres_bin();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gatehouse-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Owned by whoever runs the server (a no-op when that is us).
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status();
        let data = dir.join("data");
        let mut initdb = postgres_command(&bin, "initdb");
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run_ok(initdb, "initdb");
        let mut start = postgres_command(&bin, "pg_ctl");
        start.arg("-D").arg(&data).arg("-l").arg(dir.join("log"));
        start.arg("-o").arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=500 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.display()
        ));
        start.args(["-w", "-t", "60", "start"]);
        run_ok(start, "pg_ctl start");
        // Stops the server once this process is gone (tests never drop a
        // static); its output goes nowhere, so nothing waits on it.
        let runuser = if running_as_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
                 {runuser}'{pg_ctl}' -D '{data}' -m immediate stop; rm -rf '{dir}'",
                pid = std::process::id(),
                pg_ctl = bin.join("pg_ctl").display(),
                data = data.display(),
                dir = dir.display(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        Self { port, bin }
    }

    /// A new, empty database of this server: its URL.
    pub fn database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "t{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut create = self.client("createdb");
        create.arg(&name);
        run_ok(create, "createdb");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Drops the database at `url` (and whatever is still connected to it).
    fn drop_database(&self, url: &str) {
        let Some(name) = url.rsplit('/').next() else {
            return;
        };
        let mut drop = self.client("dropdb");
        drop.args(["--force", "--if-exists", name]);
        let _ = drop.status();
    }

    /// A client `program` (`createdb`, `dropdb`) addressed to this server
    /// as its superuser.
    fn client(&self, program: &str) -> Command {
        let mut command = postgres_command(&self.bin, program);
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]);
        command
    }
}

/// The session stores that store-backed tests run on, each one for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    /// The default store: a SQLite file of the test's own.
    Sqlite,
    Redis,
    /// A database of its own on the test process' Postgres server.
    Postgres,
}

impl StoreKind {
    /// Whether several instances may share it (each of the others belongs
    /// to one process).
    #[allow(dead_code)] // not every test binary uses it
    pub fn shared(self) -> bool {
        matches!(self, StoreKind::Redis | StoreKind::Postgres)
    }
}

/// One test's session store: its `SESSION_STORE` value, and what keeps it
/// alive (a `redis-server`, a SQLite file or Postgres database removed on
/// drop).
pub struct TestStore {
    pub url: String,
    redis: Option<Redis>,
    dir: Option<std::path::PathBuf>,
    postgres: bool,
}

impl TestStore {
    /// The `redis-server` behind it, if it is Redis.
    #[allow(dead_code)] // not every test binary uses it
    pub fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    pub async fn start(kind: StoreKind) -> Self {
        match kind {
            StoreKind::Memory => Self {
                url: "memory".into(),
                redis: None,
                dir: None,
                postgres: false,
            },
            StoreKind::Sqlite => {
                let dir = std::env::temp_dir().join(format!(
                    "gatehouse-test-{}-{}",
                    std::process::id(),
                    free_port()
                ));
                std::fs::create_dir_all(&dir).unwrap();
                Self {
                    url: format!("sqlite://{}/sessions.db", dir.display()),
                    redis: None,
                    dir: Some(dir),
                    postgres: false,
                }
            }
            StoreKind::Redis => {
                let redis = Redis::start().await;
                Self {
                    url: redis.url.clone(),
                    redis: Some(redis),
                    dir: None,
                    postgres: false,
                }
            }
            StoreKind::Postgres => {
                let url = tokio::task::spawn_blocking(|| PostgresServer::get().database())
                    .await
                    .unwrap();
                Self {
                    url,
                    redis: None,
                    dir: None,
                    postgres: true,
                }
            }
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if self.postgres {
            PostgresServer::get().drop_database(&self.url);
        }
    }
}

/// Runs each named `async fn(StoreKind)` as four tests, one per store:
/// `<name>::memory`, `<name>::sqlite`, `<name>::redis`, `<name>::postgres`.
#[macro_export]
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use $crate::helpers::StoreKind;
            #[tokio::test]
            async fn memory() {
                super::$test(StoreKind::Memory).await
            }
            #[tokio::test]
            async fn sqlite() {
                super::$test(StoreKind::Sqlite).await
            }
            #[tokio::test]
            async fn redis() {
                super::$test(StoreKind::Redis).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$test(StoreKind::Postgres).await
            }
        }
    )*};
}

impl TestApp {
    /// A copy of this browser (same cookie jar).
    pub fn same_browser(&self) -> TestApp {
        TestApp {
            base: self.base.clone(),
            http: self.http.clone(),
            jar: self.jar.clone(),
            clock: self.clock.clone(),
        }
    }

    /// `GET path` as JSON with exactly this session cookie value, from a
    /// client without a jar: what a stolen or stale cookie can still do.
    pub async fn get_json_with_cookie(&self, cookie: &str, path: &str) -> Response {
        reqwest::Client::new()
            .get(self.url(path))
            .header(header::COOKIE, format!("gatehouse_session={cookie}"))
            .header("X-CSRF", "1")
            .send()
            .await
            .unwrap()
    }
}

/// The gatehouse binary, killed on drop if a test fails before it exits.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Its exit status, waiting at most `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// `gatehouse` itself, as `make dev` runs it, on a free port, with the
/// memory store and `settings` on top; returns once `/healthz` answers.
pub async fn start_gatehouse(idp: &Idp, settings: &[(&str, &str)]) -> (Process, TestApp, u16) {
    start_gatehouse_to(idp, settings, Stdio::null()).await
}

/// [`start_gatehouse`] with its stdout (its log lines) to `stdout`.
pub async fn start_gatehouse_to(
    idp: &Idp,
    settings: &[(&str, &str)],
    stdout: Stdio,
) -> (Process, TestApp, u16) {
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .env("APP_BASE_URL", &base)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("OIDC_ISSUER_URL", &idp.issuer)
        .env("SESSION_STORE", "memory")
        .env("APP_DATABASE_URL", "sqlite::memory:")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(stdout);
    for (name, value) in settings {
        command.env(name, value);
    }
    let process = Process(
        command
            .spawn()
            .expect("the gatehouse binary (built by cargo test)"),
    );
    let app = TestApp::at(&base);
    for _ in 0..400 {
        if app
            .http
            .get(app.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
        {
            return (process, app, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gatehouse did not start");
}

/// The idle deadline `app` reports for `browser`'s session.
pub async fn idle_deadline(browser: &TestApp, app: &TestApp) -> i64 {
    let response = browser.get_json_at(app, "/auth/user").await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let user: serde_json::Value = response.json().await.unwrap();
    user["session"]["idle_expires_at"].as_i64().unwrap()
}
