//! `make bench`: what the BFF costs per request, per login, per refresh storm,
//! per stored session, and what the browser downloads, each against a baseline
//! measured in the same run. Writes `bench/results.json` and
//! `bench/results.md` and prints every budget missed. Benchmarks are not
//! tests: nothing here fails on a number.
//!
//! Runs the release binary (cargo-leptos' build, copied by `make bench`)
//! as its own process against the dev IdP, with `wrk` (Debian) as the load
//! generator, all on loopback. The baseline is this same executable started
//! with `--bare`: a plain axum handler answering `/auth/user` with the same
//! JSON bytes and no session, on the same runtime.

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gatehouse::{
    auth::session::{encode_record, index_entry, RawIdToken, SessionRecord, TokenSet, RECORD_KEY},
    server::{clock::Clock, config::StoreUrl, store::AnyStore},
};
use helpers::{free_port, Idp, PostgresServer, Redis, TestApp};
use leptos::server_fn::ServerFn;
use openidconnect::{AccessToken, RefreshToken};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    SessionStore,
};

/// cargo-leptos' release build, copied aside by `make bench` (cargo bench
/// itself rebuilds `target/release/gatehouse` without cargo-leptos' settings).
const APP_BINARY: &str = "target/gatehouse-bench";
const SITE_ROOT: &str = "target/site";
const CONNECTIONS: u32 = 64;
const DURATION_SECS: u32 = 10;
/// How many rounds each budgeted measure takes, the median round kept: the
/// rows (a), (b), (c) and many sessions (runs of [`ROUND_SECS`], each
/// between two runs of the ceiling: [`Bracketed`]) and the login rate
/// (rounds of [`LOGINS`]).
const ROUNDS: usize = 3;
const ROUND_SECS: u32 = 5;
const LOGINS: u32 = 100;
/// Logins before the login rate is measured. The dev IdP is node: its
/// login path runs interpreted until V8 has seen it a few thousand times
/// (`BENCH_ONLY=login`, 500 logins a round: 154, 177, 181, 180, 199, 207,
/// 202, 205/s, the IdP's CPU per login 5.4 → 3.3 ms, the BFF's 0.9–1.0 ms
/// throughout). A production IdP is a warm server, so the rate is measured
/// warm: this many logins first (about 10 s).
const IDP_WARM_UP_LOGINS: u32 = 2_000;
const STORM: usize = 200;
const MEMORY_SESSIONS: usize = 100_000;
const SQLITE_SESSIONS: usize = 20_000;
/// Open `/auth/events` streams on one instance, spread over this many sessions.
const OPEN_TABS: usize = 10_000;
const TAB_SESSIONS: usize = 400;
/// How long the open tabs sit idle while CPU and store commands are counted.
const IDLE_SECS: u64 = 10;
/// Distinct signed-in sessions the "many users" row spreads its load over.
const MANY_SESSIONS: usize = 1_000;
/// Requests counted under callgrind, one at a time, after a warm-up.
const COUNTED_REQUESTS: usize = 500;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare") {
        let port: u16 = args[i + 1].parse().expect("--bare PORT BODY_FILE");
        let body = std::fs::read(&args[i + 2]).expect("--bare PORT BODY_FILE");
        return bare_server(port, body);
    }
    if let Some(i) = args.iter().position(|a| a == "--bare-ssr") {
        let port: u16 = args[i + 1].parse().expect("--bare-ssr PORT USER_FILE");
        let user = std::fs::read(&args[i + 2]).expect("--bare-ssr PORT USER_FILE");
        return bare_pages(port, serde_json::from_slice(&user).expect("a UserView"));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

/// The ceiling: axum alone, the same JSON, no session, no layers.
fn bare_server(port: u16, body: Vec<u8>) {
    use axum::{
        http::header,
        routing::{get, post},
        Router,
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let answer = move || {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            };
            // `/auth/user`, and the same JSON at the other rows' paths, so
            // each row's bare runs send exactly its requests (`Bracketed`).
            let current_user = <gatehouse::components::current_user::CurrentUser as ServerFn>::PATH;
            let app = Router::new()
                .route("/auth/user", get(answer.clone()))
                .route(current_user, post(answer.clone()))
                .route("/profile", get(answer));
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            axum::serve(listener, app).await.unwrap();
        });
}

/// The SSR baseline: the app's own pages and components, rendered for a
/// fixed user, with no session layer, no store, no IdP and no other layer.
fn bare_pages(port: u16, user: gatehouse::types::UserView) {
    use gatehouse::{app::shell, components::current_user::RenderedFor};
    use leptos::prelude::provide_context;
    use leptos_axum::LeptosRoutes;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let mut options = leptos::config::get_configuration(Some("Cargo.toml"))
                .expect("Leptos options (run from the repository root)")
                .leptos_options;
            options.site_root = SITE_ROOT.into();
            if options.output_name.is_empty() {
                options.output_name = "gatehouse".into();
            }
            let routes = gatehouse::server::page_routes();
            let app = axum::Router::new()
                .leptos_routes_with_context(
                    &options,
                    routes,
                    move || provide_context(RenderedFor(user.clone())),
                    {
                        let options = options.clone();
                        move || shell(options.clone())
                    },
                )
                .with_state(options);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            axum::serve(listener, app).await.unwrap();
        });
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn cpu_time(&self) -> Duration {
        cpu_time(&self.pid().to_string())
    }
}

/// User + system CPU time so far of process `pid` (or `self`), from /proc
/// (clock ticks of 10 ms).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

async fn wait_until_up(url: &str) {
    for _ in 0..200 {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

/// The release app as its own process, on a free port.
async fn start_app(issuer: &str, store: &str) -> (Process, TestApp) {
    start_app_with(issuer, store, &[]).await
}

/// [`start_app`] with more environment (e.g. `TOKIO_WORKER_THREADS`).
async fn start_app_with(issuer: &str, store: &str, env: &[(&str, &str)]) -> (Process, TestApp) {
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let child = Command::new(APP_BINARY)
        .env("APP_BASE_URL", &base)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_SITE_ROOT", SITE_ROOT)
        .env("OIDC_ISSUER_URL", issuer)
        .env("SESSION_STORE", store)
        .env("APP_DATABASE_URL", "sqlite::memory:")
        // The login benchmark signs in from one address many times a second.
        .env("AUTH_RATE_LIMIT_PER_MINUTE", "1000000")
        .envs(env.iter().copied())
        // `BENCH_APP_LOG=<file>`: the app's log lines (one per request, with
        // its time in ms) appended there, to see which requests are slow.
        .stdout(match std::env::var_os("BENCH_APP_LOG") {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
            None => Stdio::null(),
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{APP_BINARY}: {e} (make bench builds it)"));
    let process = Process(child);
    wait_until_up(&format!("{base}/healthz")).await;
    (process, TestApp::at(&base))
}

#[derive(Debug, Clone, serde::Serialize)]
struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// `wrk --latency` against `url`; `script` sets method, body and headers.
fn wrk(url: &str, headers: &[(&str, &str)], post: bool) -> Load {
    wrk_for(DURATION_SECS, url, headers, post)
}

/// [`wrk`] for `secs` seconds.
fn wrk_for(secs: u32, url: &str, headers: &[(&str, &str)], post: bool) -> Load {
    wrk_script(secs, url, headers, post, "")
}

/// [`wrk`] with each request's cookie taken in turn from `cookies`, so the
/// load is spread over that many sessions.
fn wrk_spread(secs: u32, url: &str, headers: &[(&str, &str)], cookies: &[String]) -> Load {
    let mut lua = String::from("local cookies = {\n");
    for cookie in cookies {
        lua.push_str(&format!("  \"{cookie}\",\n"));
    }
    // Formatted once per thread (wrk.format with headers replaces
    // wrk.headers, so each request carries them all plus its cookie).
    lua.push_str(
        "}\nlocal requests = {}\nlocal i = 0\n\
         init = function()\n\
           for n, cookie in ipairs(cookies) do\n\
             local h = { [\"Cookie\"] = cookie }\n\
             for k, v in pairs(wrk.headers) do h[k] = v end\n\
             requests[n] = wrk.format(nil, nil, h)\n\
           end\n\
         end\n\
         request = function()\n  i = i + 1\n  return requests[(i % #requests) + 1]\nend\n",
    );
    wrk_script(secs, url, headers, false, &lua)
}

fn wrk_script(secs: u32, url: &str, headers: &[(&str, &str)], post: bool, extra: &str) -> Load {
    let mut lua = String::new();
    if post {
        lua.push_str("wrk.method = \"POST\"\nwrk.body = \"\"\n");
        lua.push_str("wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n");
    }
    for (k, v) in headers {
        lua.push_str(&format!("wrk.headers[\"{k}\"] = \"{v}\"\n"));
    }
    lua.push_str(extra);
    let script = std::env::temp_dir().join(format!("gatehouse-bench-{}.lua", std::process::id()));
    std::fs::write(&script, lua).unwrap();
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("wrk must be installed (make bench installs it)");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let number = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let millis = |v: &str| -> f64 {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            "m" => n * 60_000.0,
            _ => f64::NAN,
        }
    };
    let non_2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses:"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Load {
        requests_per_sec: number("Requests/sec:")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no wrk result: {text}")),
        p50_ms: number("50%").map(millis).unwrap_or(f64::NAN),
        p99_ms: number("99%").map(millis).unwrap_or(f64::NAN),
        non_2xx,
    }
}

async fn run() {
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "sealing") {
        println!("{}", sealing_cost());
        return;
    }
    assert!(
        Path::new(APP_BINARY).exists() && Path::new(SITE_ROOT).join("pkg").exists(),
        "run `make bench` (it builds {APP_BINARY} and {SITE_ROOT} first)"
    );
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "instructions") {
        // Where the instructions go: the counts, with their dumps kept.
        let idp = Idp::start().await;
        let (_process, app) = start_app(&idp.issuer, "memory").await;
        app.login("alice", "alice").await;
        let body = app.get_json("/auth/user").await.bytes().await.unwrap();
        println!(
            "{}",
            instructions_per_request(&bare_command(&body), None).await
        );
        let memory = app_command(&idp.issuer, "memory");
        println!("{}", instructions_per_request(&memory, Some("alice")).await);
        let sqlite_dir = tempdir("sqlite");
        let sqlite = format!("sqlite://{}/counted.db", sqlite_dir.display());
        let sqlite = app_command(&idp.issuer, &sqlite);
        println!("{}", instructions_per_request(&sqlite, Some("alice")).await);
        // (b): the same user through the `current_user` server function.
        let current_user = <gatehouse::components::current_user::CurrentUser as ServerFn>::PATH;
        println!(
            "{}",
            instructions_per(&memory, Some("alice"), current_user, true).await
        );
        return;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "many") {
        // For chasing the one-session / many-sessions gap by hand: on one
        // store (`BENCH_STORE`: memory, sqlite, redis or postgres; memory
        // if unset), one session and 1,000 in turn, each after the bare
        // handler under the same wrk job, three times, so a change can be
        // compared within one run.
        let store = std::env::var("BENCH_STORE").unwrap_or_else(|_| "memory".into());
        let idp = Idp::start_with(&[("IDP_ACCESS_TOKEN_TTL", "3600")]).await;
        let redis = Redis::start().await;
        let sqlite_dir = tempdir("sqlite");
        let url = match store.as_str() {
            "redis" => redis.url.clone(),
            "postgres" => PostgresServer::get().database(),
            "sqlite" => format!("sqlite://{}/sessions.db", sqlite_dir.display()),
            _ => "memory".to_string(),
        };
        let (_process, app) = start_app(&idp.issuer, &url).await;
        app.login("alice", "alice").await;
        let cookie = format!(
            "gatehouse_session={}",
            app.session_cookie().expect("signed in")
        );
        let user_json = app.get_json("/auth/user").await.bytes().await.unwrap();
        let (_bare, bare_port) = start_baseline("--bare", &user_json);
        let bare_url = format!("http://127.0.0.1:{bare_port}/auth/user");
        let cookies = sign_in_many(&app, MANY_SESSIONS).await;
        // `BENCH_MANY_PAUSE=<seconds>`: the sessions idle first, so that
        // (past a minute) they all fall due for their idle renewal at the
        // first round's start, as in the full run's many-sessions row.
        if let Some(pause) = std::env::var("BENCH_MANY_PAUSE")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            tokio::time::sleep(Duration::from_secs(pause)).await;
        }
        let auth = [("Cookie", cookie.as_str()), ("X-CSRF", "1")];
        let spread = |url: &str| wrk_spread(DURATION_SECS, url, &[("X-CSRF", "1")], &cookies);
        for round in 1..=3 {
            // Each against the bare handler sent the same requests by the
            // same wrk job (`Bracketed`), measured just before it.
            let bare_one = wrk(&bare_url, &auth, false).requests_per_sec;
            let one = wrk(&app.url("/auth/user"), &auth, false);
            let bare_many = spread(&bare_url).requests_per_sec;
            let many = spread(&app.url("/auth/user"));
            println!(
                "{store} round {round}: one session {:.0}% of {bare_one:.0}/s (p99 {:.2} ms), {MANY_SESSIONS} sessions {:.0}% of {bare_many:.0}/s (p99 {:.2} ms, {} non-2xx)",
                one.requests_per_sec * 100.0 / bare_one,
                one.p99_ms,
                many.requests_per_sec * 100.0 / bare_many,
                many.p99_ms,
                many.non_2xx,
            );
        }
        return;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "login") {
        // For chasing the login rate by hand: the login measure alone,
        // three times. (To profile the dev IdP, put first on PATH a `node`
        // script running `/usr/bin/node --prof "$@"`.)
        let idp = Idp::start_with(&[("IDP_ACCESS_TOKEN_TTL", "3600")]).await;
        let (process, app) = start_app(&idp.issuer, "memory").await;
        for _ in 0..3 {
            println!("{}", login_cost(&process, &app, &idp).await);
        }
        return;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "refresh_storm") {
        // For chasing a miss by hand: the storm alone, five times.
        for _ in 0..5 {
            println!("{}", refresh_storm().await);
        }
        return;
    }
    let started = OffsetDateTime::now_utc();
    let idp = Idp::start_with(&[("IDP_ACCESS_TOKEN_TTL", "3600")]).await;
    let redis = Redis::start().await;
    let sqlite_dir = tempdir("sqlite");
    let stores = [
        ("memory", "memory".to_string()),
        (
            "sqlite",
            format!("sqlite://{}/sessions.db", sqlite_dir.display()),
        ),
        ("redis", redis.url.clone()),
        // Informational: issue 15's budgets name the other three.
        ("postgres", PostgresServer::get().database()),
    ];
    let current_user = <gatehouse::components::current_user::CurrentUser as ServerFn>::PATH;

    let mut ceiling_runs = Vec::new();
    let mut bare = None;
    let mut per_store = Map::new();
    let mut user_json = Vec::new();
    let mut login = Value::Null;
    let mut one_worker_run = Value::Null;
    let mut frontend = Value::Null;
    for (i, (name, url)) in stores.iter().enumerate() {
        let (process, app) = start_app(&idp.issuer, url).await;
        app.login("alice", "alice").await;
        let cookie = format!(
            "gatehouse_session={}",
            app.session_cookie().expect("signed in")
        );
        let user = app.get_json("/auth/user").await;
        assert_eq!(user.status(), 200);
        user_json = user.bytes().await.unwrap().to_vec();
        if i == 0 {
            // The ceiling, before and after the app runs, so drift shows.
            ceiling_runs.push(bare_ceiling(&user_json));
            bare = Some(start_baseline("--bare", &user_json));
        }
        let bare_base = format!("http://127.0.0.1:{}", bare.as_ref().unwrap().1);
        if std::env::var("BENCH_PROFILE").is_ok_and(|only| only == *name) {
            // For profiling by hand: the signed-in app stays up for a few
            // minutes; drive it with `wrk` and record it with `perf -p`.
            println!(
                "BENCH_PROFILE pid={} url={} cookie={cookie}",
                process.pid(),
                app.url("/auth/user")
            );
            tokio::time::sleep(Duration::from_secs(300)).await;
            return;
        }
        let auth = [("Cookie", cookie.as_str()), ("X-CSRF", "1")];
        let page = [("Cookie", cookie.as_str()), ("Accept", "text/html")];
        eprintln!("bench: {name} store");
        let cookies = sign_in_many(&app, MANY_SESSIONS).await;
        let bracket = Bracketed::new(&app.base, &bare_base);
        let to = |base: &str, path: &str| format!("{base}{path}");
        let results = json!({
            "auth_user": bracket.row(|base, secs| wrk_for(secs, &to(base, "/auth/user"), &auth, false)),
            "server_fn": bracket.row(|base, secs| wrk_for(secs, &to(base, current_user), &auth, true)),
            "ssr_profile": bracket.row(|base, secs| wrk_for(secs, &to(base, "/profile"), &page, false)),
            "auth_user_many": bracket.row(|base, secs| {
                wrk_spread(secs, &to(base, "/auth/user"), &[("X-CSRF", "1")], &cookies)
            }),
        });
        per_store.insert(name.to_string(), results);
        if *name == "memory" {
            // wrk shares the 2 cores: one worker thread leaves it one.
            let (_one, one_worker) =
                start_app_with(&idp.issuer, url, &[("TOKIO_WORKER_THREADS", "1")]).await;
            one_worker.login("alice", "alice").await;
            let cookie = format!(
                "gatehouse_session={}",
                one_worker.session_cookie().expect("signed in")
            );
            let auth = [("Cookie", cookie.as_str()), ("X-CSRF", "1")];
            one_worker_run = json!(wrk(&one_worker.url("/auth/user"), &auth, false));
            login = login_cost(&process, &app, &idp).await;
            frontend = front_end(&app, &idp).await;
        }
    }
    ceiling_runs.push(bare_ceiling(&user_json));
    let ssr_baseline = bare_pages_load(&user_json);
    let ceiling =
        ceiling_runs.iter().map(|l| l.requests_per_sec).sum::<f64>() / ceiling_runs.len() as f64;

    let instructions = json!({
        "ceiling": instructions_per_request(&bare_command(&user_json), None).await,
        "memory": instructions_per_request(&app_command(&idp.issuer, "memory"), Some("alice")).await,
        "sqlite": instructions_per_request(
            &app_command(&idp.issuer, &format!("sqlite://{}/counted.db", sqlite_dir.display())),
            Some("alice"),
        )
        .await,
    });
    let tabs = open_tabs(&idp, &redis).await;
    let storm = refresh_storm().await;
    let memory = memory_per_session().await;
    let sqlite = sqlite_size().await;
    let sealing = sealing_cost();

    let results = json!({
        "date": started.date().to_string(),
        "machine": machine(),
        "connections": CONNECTIONS,
        "duration_secs": DURATION_SECS,
        "rounds": ROUNDS,
        "round_secs": ROUND_SECS,
        "ceiling": { "runs": ceiling_runs, "requests_per_sec": ceiling },
        "ssr_baseline": ssr_baseline,
        "stores": per_store,
        "auth_user_memory_one_worker": one_worker_run,
        "login": login,
        "refresh_storm": storm,
        "memory_store": memory,
        "sqlite_store": sqlite,
        "sealing": sealing,
        "front_end": frontend,
        "open_tabs": tabs,
        "instructions_per_request": instructions,
    });
    std::fs::create_dir_all("bench").unwrap();
    std::fs::write(
        "bench/results.json",
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    let (markdown, misses) = report(&results);
    std::fs::write("bench/results.md", &markdown).unwrap();
    println!("{markdown}");
    if misses.is_empty() {
        println!("All budgets met.");
    } else {
        for miss in &misses {
            println!("BUDGET MISSED: {miss}");
        }
    }
    let _ = std::fs::remove_dir_all(sqlite_dir);
}

/// `count` browsers signed in through the dev IdP; their session cookies.
async fn sign_in_many(app: &TestApp, count: usize) -> Vec<String> {
    eprintln!("bench: signing in {count} sessions");
    let mut cookies = Vec::with_capacity(count);
    for _ in 0..count {
        let browser = TestApp::at(&app.base);
        assert_eq!(browser.login("alice", "alice").await.status(), 303);
        cookies.push(format!(
            "gatehouse_session={}",
            browser.session_cookie().expect("signed in")
        ));
    }
    cookies
}

/// How to start the release app (or, below, the bare ceiling) as a program
/// and its environment, on a free port.
struct Program {
    path: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
}

fn app_command(issuer: &str, store: &str) -> Program {
    let port = free_port();
    Program {
        path: APP_BINARY.into(),
        args: vec![],
        env: [
            ("APP_BASE_URL", format!("http://localhost:{port}")),
            ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")),
            ("LEPTOS_SITE_ROOT", SITE_ROOT.to_string()),
            ("OIDC_ISSUER_URL", issuer.to_string()),
            ("SESSION_STORE", store.to_string()),
            ("APP_DATABASE_URL", "sqlite::memory:".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        port,
    }
}

fn bare_command(body: &[u8]) -> Program {
    let port = free_port();
    let body_file = std::env::temp_dir().join(format!("gatehouse-bench-body-{port}.json"));
    std::fs::write(&body_file, body).unwrap();
    Program {
        path: std::env::current_exe().unwrap(),
        args: vec![
            "--bare".into(),
            port.to_string(),
            body_file.display().to_string(),
        ],
        env: vec![],
        port,
    }
}

/// Instructions per `GET /auth/user`, counted by callgrind (a count, not a
/// time: the same on a busy or an idle machine). `program` runs under
/// valgrind; after sign-in (as `user`, if any) and a warm-up the counters
/// are zeroed, [`COUNTED_REQUESTS`] requests are sent one after another on
/// one connection, and the counters are dumped. `None` without valgrind.
async fn instructions_per_request(program: &Program, user: Option<&str>) -> Value {
    instructions_per(program, user, "/auth/user", false).await
}

/// [`instructions_per_request`] for another signed-in request: `path`, a
/// GET, or with `post` an empty form POST (a server function).
async fn instructions_per(program: &Program, user: Option<&str>, path: &str, post: bool) -> Value {
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Value::Null;
    }
    eprintln!("bench: counting instructions of {}", program.path.display());
    // `BENCH_CACHESIM_SESSIONS=<n>` (with `BENCH_ONLY=instructions`): the
    // counted requests spread over n signed-in sessions, and callgrind's
    // cache simulation on, to see which reads miss the caches when the
    // sessions do not all fit in them (`callgrind_annotate` on the kept
    // dumps: D1mr, DLmr).
    let cache_sim = std::env::var("BENCH_CACHESIM_SESSIONS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| user.is_some());
    let dir = tempdir("callgrind");
    let child = Command::new("valgrind")
        .args(["--tool=callgrind", "-q"])
        .args(cache_sim.map(|_| "--cache-sim=yes"))
        .arg(format!("--callgrind-out-file={}/out", dir.display()))
        .arg(&program.path)
        .args(&program.args)
        .envs(program.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // The many sessions sign in from one address in a burst.
        .envs(cache_sim.map(|_| ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("valgrind");
    let process = Process(child);
    let base = format!("http://localhost:{}", program.port);
    let url = format!("{base}{path}");
    let up = async {
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", program.port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(180), up)
        .await
        .expect("the program did not start under valgrind");
    let app = TestApp::at(&base);
    if let Some(user) = user {
        assert_eq!(app.login(user, user).await.status(), 303);
    }
    // The request wrk sends: the session cookie alone. (The login's client
    // also holds the dev IdP's cookies, which a browser would send here
    // too, since cookies ignore the port: parsing them was 8% of the count.)
    let mut cookies: Vec<String> = app
        .session_cookie()
        .map(|id| format!("gatehouse_session={id}"))
        .into_iter()
        .collect();
    if let Some(n) = cache_sim {
        cookies.extend(sign_in_many(&app, n.saturating_sub(1)).await);
    }
    let http = reqwest::Client::new();
    let send = |n: usize| {
        let http = &http;
        let url = &url;
        let cookies = &cookies;
        async move {
            for i in 0..n {
                let cookie = (!cookies.is_empty()).then(|| &cookies[i % cookies.len()]);
                let mut request = if post {
                    http.post(url)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body("")
                } else {
                    http.get(url)
                }
                .header("X-CSRF", "1");
                if let Some(cookie) = cookie {
                    request = request.header("Cookie", cookie);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
            }
        }
    };
    // Every session read once before counting (its decoded record kept).
    send(cookies.len().max(50)).await;
    let control = |flag: &str| {
        let done = Command::new("callgrind_control")
            .arg(flag)
            .arg(process.pid().to_string())
            .output()
            .expect("callgrind_control");
        assert!(done.status.success(), "callgrind_control {flag} failed");
    };
    control("-z");
    send(COUNTED_REQUESTS).await;
    control("-d");
    // The dump just made: `out.1` (the final one, at exit, is `out`).
    let total = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("out."))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
                .and_then(|n| n.split_whitespace().next()?.parse::<u64>().ok())
        })
        .max()
        .expect("a callgrind dump");
    drop(process);
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "instructions") {
        // Kept for `callgrind_annotate` (where the instructions go).
        println!("callgrind dumps kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    json!({
        "requests": COUNTED_REQUESTS,
        "instructions_per_request": total as f64 / COUNTED_REQUESTS as f64,
    })
}

fn tempdir(what: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("gatehouse-bench-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// This bench binary started again in one of its baseline modes (`--bare`,
/// `--bare-ssr`) with `input` in a file, on a free port; returns once it listens.
fn start_baseline(mode: &str, input: &[u8]) -> (Process, u16) {
    let port = free_port();
    let file = std::env::temp_dir().join(format!("gatehouse-bench-input-{port}.json"));
    std::fs::write(&file, input).unwrap();
    let process = Process(
        Command::new(std::env::current_exe().unwrap())
            .arg(mode)
            .arg(port.to_string())
            .arg(&file)
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, port)
}

fn bare_ceiling(body: &[u8]) -> Load {
    let (_bare, port) = start_baseline("--bare", body);
    eprintln!("bench: bare axum ceiling");
    wrk(&format!("http://127.0.0.1:{port}/auth/user"), &[], false)
}

/// Rows measured between runs of the ceiling (the bare handler at
/// `bare_base`, kept running), each as [`ROUNDS`] short runs: bare, row,
/// bare, row, …, bare. The bare runs send the row's own requests (same
/// path, method, headers and, for the many-sessions row, the same wrk
/// script handing out 1,000 cookies), so a ratio compares the servers under
/// the same load generator: wrk shares the 2 cores, and its per-request Lua
/// (`wrk_spread`) costs it more than a fixed request (see README,
/// Performance). Each round's ratio is to the mean of the ceiling runs just
/// before and just after it; the row's result is its median round (its
/// requests/s, latencies and ratio all from that one run), with every
/// round kept in the JSON and every round's errors counted.
///
/// Why: the machine's speed drifts over a run (the ceiling measured last has
/// come out 20–25% below the first), and one run of the bare handler alone
/// differs from the next by up to ±10% (87–117k/s in one run; no steal time
/// shows, it is how wrk's and the server's four busy threads happen to share
/// two cores), so one row against one pair of runs could land 10 points off
/// either way: the memory many-sessions row read 48–65% in runs of the same
/// code. The median of three bracketed rounds follows the drift and does not
/// let one unlucky run decide a budget.
struct Bracketed<'a> {
    app_base: &'a str,
    bare_base: &'a str,
}

struct Round {
    load: Load,
    ceiling_before: f64,
    ceiling_after: f64,
}

impl Round {
    fn ceiling(&self) -> f64 {
        (self.ceiling_before + self.ceiling_after) / 2.0
    }

    fn ratio(&self) -> f64 {
        self.load.requests_per_sec / self.ceiling()
    }
}

impl<'a> Bracketed<'a> {
    fn new(app_base: &'a str, bare_base: &'a str) -> Self {
        Self {
            app_base,
            bare_base,
        }
    }

    /// `job(base, secs)` sends the row's load to the server at `base` for
    /// `secs` seconds: the app's for the row, the bare handler's around it.
    fn row(&self, job: impl Fn(&str, u32) -> Load) -> Value {
        let ceiling = || job(self.bare_base, ROUND_SECS).requests_per_sec;
        let mut last = None;
        let mut rounds: Vec<Round> = (0..ROUNDS)
            .map(|_| {
                let ceiling_before = last.take().unwrap_or_else(ceiling);
                let load = job(self.app_base, ROUND_SECS);
                let ceiling_after = ceiling();
                last = Some(ceiling_after);
                Round {
                    load,
                    ceiling_before,
                    ceiling_after,
                }
            })
            .collect();
        let non_2xx: u64 = rounds.iter().map(|r| r.load.non_2xx).sum();
        let all: Vec<Value> = rounds
            .iter()
            .map(|r| {
                json!({
                    "load": r.load,
                    "ceiling_before": r.ceiling_before,
                    "ceiling_after": r.ceiling_after,
                    "ratio": r.ratio(),
                })
            })
            .collect();
        rounds.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
        let median = &rounds[ROUNDS / 2];
        let mut load = json!(median.load);
        load["non_2xx"] = json!(non_2xx);
        load["ceiling_before"] = json!(median.ceiling_before);
        load["ceiling_after"] = json!(median.ceiling_after);
        load["paired_ceiling"] = json!(median.ceiling());
        load["ratio_range"] = json!([rounds[0].ratio(), rounds[ROUNDS - 1].ratio()]);
        load["rounds"] = json!(all);
        load
    }
}

/// `/profile` rendered by [`bare_pages`] for the user `/auth/user` answered.
fn bare_pages_load(user_json: &[u8]) -> Load {
    let (_pages, port) = start_baseline("--bare-ssr", user_json);
    eprintln!("bench: SSR baseline (fixed user, no session)");
    wrk(
        &format!("http://127.0.0.1:{port}/profile"),
        &[("Accept", "text/html")],
        false,
    )
}

/// Full logins per second through the BFF (one browser after another, JWKS
/// cached and the dev IdP's JIT warm, see [`IDP_WARM_UP_LOGINS`]), and where
/// a login's time goes: the CPU time of the BFF, of the dev IdP (node) and
/// of the browser (this process: reqwest, a new client and cookie jar per
/// login). [`ROUNDS`] rounds of [`LOGINS`]; the median round by rate is
/// the result (one round lasts under a second, and a slow second of this
/// machine moved a single round's rate from 184/s to 129/s between runs,
/// every process' CPU per login up by a third with it).
async fn login_cost(process: &Process, app: &TestApp, idp: &Idp) -> Value {
    eprintln!("bench: {IDP_WARM_UP_LOGINS} logins to warm the dev IdP up");
    for _ in 0..IDP_WARM_UP_LOGINS {
        let response = TestApp::at(&app.base).login("bob", "bob").await;
        assert_eq!(response.status(), 303);
    }
    let idp_pid = idp.pid().to_string();
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let (bff, node, browser) = (process.cpu_time(), cpu_time(&idp_pid), cpu_time("self"));
        let started = Instant::now();
        for _ in 0..LOGINS {
            let browser = TestApp::at(&app.base);
            let response = browser.login("bob", "bob").await;
            assert_eq!(response.status(), 303);
        }
        let wall = started.elapsed();
        let per_login = |spent: Duration| spent.as_secs_f64() * 1000.0 / f64::from(LOGINS);
        rounds.push(json!({
            "logins_per_sec": f64::from(LOGINS) / wall.as_secs_f64(),
            "wall_ms_per_login": per_login(wall),
            "bff_cpu_ms_per_login": per_login(process.cpu_time() - bff),
            "idp_cpu_ms_per_login": per_login(cpu_time(&idp_pid) - node),
            "browser_cpu_ms_per_login": per_login(cpu_time("self") - browser),
        }));
    }
    let rate = |round: &Value| round["logins_per_sec"].as_f64().unwrap();
    let mut sorted = rounds.clone();
    sorted.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let mut result = sorted[ROUNDS / 2].clone();
    result["logins"] = json!(LOGINS);
    result["idp_warm_up_logins"] = json!(IDP_WARM_UP_LOGINS);
    result["rate_range"] = json!([rate(&sorted[0]), rate(&sorted[ROUNDS - 1])]);
    result["rounds"] = json!(rounds);
    result
}

/// One open tab's `/auth/events` stream, on a raw socket (10,000 of them
/// through reqwest would measure reqwest).
async fn open_tab(port: u16, cookie: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "GET /auth/events HTTP/1.1\r\nHost: localhost:{port}\r\nCookie: gatehouse_session={cookie}\r\nAccept: text/event-stream\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}

/// Reads `tab` until its `ended` event.
async fn until_ended(mut tab: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.windows(12).any(|w| w == b"event: ended") {
        let n = tab.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream closed before its ended event");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// 10,000 open tabs (`/auth/events`) on one instance b of two sharing Redis:
/// CPU and Redis commands while they sit idle, memory per stream, and how
/// long a sign-out on instance a takes to reach all of one session's tabs on b.
async fn open_tabs(idp: &Idp, redis: &Redis) -> Value {
    let (_a, a) = start_app(&idp.issuer, &redis.url).await;
    let (b_process, b) = start_app(&idp.issuer, &redis.url).await;
    let b_port: u16 = b.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut browsers = Vec::new();
    for _ in 0..TAB_SESSIONS {
        let browser = TestApp::at(&b.base);
        assert_eq!(browser.login("bob", "bob").await.status(), 303);
        browsers.push(browser);
    }
    let cookies: Vec<String> = browsers
        .iter()
        .map(|b| b.session_cookie().expect("signed in"))
        .collect();
    let resident_before = resident_bytes_of(&b_process.pid().to_string());
    let mut tabs = Vec::with_capacity(OPEN_TABS);
    for i in 0..OPEN_TABS {
        tabs.push(open_tab(b_port, &cookies[i % TAB_SESSIONS]).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resident_after = resident_bytes_of(&b_process.pid().to_string());

    let commands_before = redis.commands_run();
    let cpu_before = b_process.cpu_time();
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let idle_cpu = b_process.cpu_time() - cpu_before;
    let idle_commands = redis.commands_run() - commands_before;

    // Session 0's tabs (every TAB_SESSIONS-th), signed out through instance a.
    let (first_session, others): (Vec<_>, Vec<_>) = tabs
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % TAB_SESSIONS == 0);
    let tabs_of_session = first_session.len();
    let watchers: Vec<_> = first_session
        .into_iter()
        .map(|(_, tab)| tokio::spawn(until_ended(tab)))
        .collect();
    let started = Instant::now();
    let logout = browsers[0]
        .http
        .post(a.url("/auth/logout"))
        .header("Origin", &a.base)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    for watcher in watchers {
        tokio::time::timeout(Duration::from_secs(10), watcher)
            .await
            .expect("every tab of the session hears the sign-out")
            .unwrap();
    }
    let reach = started.elapsed();
    drop(others);
    json!({
        "streams": OPEN_TABS,
        "sessions": TAB_SESSIONS,
        "idle_secs": IDLE_SECS,
        "idle_cpu_percent_of_one_core": idle_cpu.as_secs_f64() * 100.0 / IDLE_SECS as f64,
        "idle_store_commands": idle_commands,
        "resident_bytes_per_stream": (resident_after.saturating_sub(resident_before)) as f64 / OPEN_TABS as f64,
        "tabs_of_the_signed_out_session": tabs_of_session,
        "sign_out_reach_ms": reach.as_secs_f64() * 1000.0,
    })
}

/// 200 concurrent requests on one session whose access token has expired.
async fn refresh_storm() -> Value {
    // 4 s, not less: the session keeps token times in whole seconds, so a
    // refreshed token may look up to 1 s older than it is; with 2 s its
    // refresh leeway (half its lifetime) could begin during the storm and
    // a second refresh would be right, not a race.
    let idp = Idp::start_with(&[("IDP_ACCESS_TOKEN_TTL", "4")]).await;
    let (_process, app) = start_app(&idp.issuer, "memory").await;
    app.login("alice", "alice").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = idp.stats().await["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    let calls = (0..STORM).map(|_| app.get_json("/auth/userinfo"));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let wall = started.elapsed();
    let after = idp.stats().await["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap();
    json!({
        "requests": STORM,
        "ok": statuses.iter().filter(|s| **s == 200).count(),
        "wall_ms": wall.as_secs_f64() * 1000.0,
        "token_endpoint_calls": after - before,
    })
}

/// A session as a Keycloak login leaves it: tokens of Keycloak's usual sizes
/// (RS256 access token ~1.5 KB with realm and client roles, refresh token
/// ~0.9 KB, ID token ~1.4 KB) and the ID token's claims.
fn keycloak_sized_record(i: usize) -> SessionRecord {
    let filler = |len: usize, seed: usize| -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|k| alphabet[(k * 31 + seed * 17) % 64] as char)
            .collect()
    };
    let sub = format!("f81d4fae-7dec-11d0-a765-{i:012}");
    let now = OffsetDateTime::now_utc();
    let claims = json!({
        "exp": now.unix_timestamp() + 300, "iat": now.unix_timestamp(),
        "auth_time": now.unix_timestamp(), "jti": filler(36, i),
        "iss": "https://sso.example.com/realms/demo", "aud": "gatehouse", "sub": sub,
        "typ": "ID", "azp": "gatehouse", "nonce": filler(43, i + 1), "sid": filler(36, i + 2),
        "at_hash": filler(22, i + 3), "acr": "1", "email_verified": true,
        "realm_access": { "roles": ["user", "offline_access", "uma_authorization"] },
        "name": "Alice Liddell", "preferred_username": "alice", "given_name": "Alice",
        "family_name": "Liddell", "email": "alice@example.com",
    });
    let Value::Object(id_token_claims) = claims else {
        unreachable!()
    };
    SessionRecord {
        idp: None,
        sub,
        sid: Some(filler(36, i + 2)),
        name: "Alice Liddell".into(),
        preferred_username: Some("alice".into()),
        email: Some("alice@example.com".into()),
        email_verified: Some(true),
        picture: None,
        roles: vec!["user".into(), "offline_access".into()],
        id_token_claims,
        tokens: TokenSet {
            access_token: AccessToken::new(filler(1500, i)),
            refresh_token: Some(RefreshToken::new(filler(900, i + 5))),
            id_token: RawIdToken::new(filler(1400, i + 7)),
            access_token_expires_at: Some(now + time::Duration::minutes(5)),
            issued_at: Some(now),
            resources: Vec::new(),
            dpop: false,
        },
        created_at: now,
        absolute_expires_at: now + time::Duration::hours(12),
        handle: filler(43, i + 9),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36".into()),
        ip: Some("203.0.113.7".into()),
        auth_time: Some(now),
        acr: Some("1".into()),
        dpop_key: None,
    }
}

fn record(i: usize) -> Record {
    let mut data = HashMap::new();
    data.insert(
        RECORD_KEY.to_string(),
        encode_record(&keycloak_sized_record(i)),
    );
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(30),
    }
}

fn resident_bytes() -> u64 {
    resident_bytes_of("self")
}

/// Resident memory of process `pid` ("self" for this one).
fn resident_bytes_of(pid: &str) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Resident memory of a memory store holding 100,000 such sessions (with the
/// sub/sid index), per session.
async fn memory_per_session() -> Value {
    let store = AnyStore::open(
        &StoreUrl::Memory,
        Duration::from_secs(12 * 3600),
        index_entry,
        Clock::system(),
    )
    .await
    .unwrap();
    let json_bytes = serde_json::to_vec(&keycloak_sized_record(0)).unwrap().len();
    let before = resident_bytes();
    for i in 0..MEMORY_SESSIONS {
        store.create(&mut record(i)).await.unwrap();
    }
    let after = resident_bytes();
    json!({
        "sessions": MEMORY_SESSIONS,
        "record_json_bytes": json_bytes,
        "resident_bytes_per_session": (after - before) as f64 / MEMORY_SESSIONS as f64,
    })
}

/// What sealing at rest costs: sealing and opening one Keycloak-sized
/// record as the SQLite and Redis stores keep it, with no key, the
/// deployment key (`SESSION_ENCRYPTION_KEY`), the session's own key
/// (`SESSION_KEY_IN_COOKIE`, the default) and both. Paid once per record
/// version (writes, and reads that miss the in-process cache), not per
/// request; what every request pays with the session's own key is deriving
/// its store key from the cookie id (`derive_us`).
fn sealing_cost() -> Value {
    use gatehouse::server::{config::EncryptionKey, store::Sealer};
    const ROUNDS: u32 = 20_000;
    let record = record(0);
    let facts = index_entry(&record.data).map(|owner| owner.facts);
    let key = || vec![EncryptionKey::from_bytes([7; 32])];
    let micros = |d: Duration| d.as_secs_f64() * 1e6 / ROUNDS as f64;
    let mut out = Map::new();
    for (name, sealer) in [
        ("clear", Sealer::off()),
        ("deployment_key", Sealer::new(&key(), false)),
        ("cookie_key", Sealer::new(&[], true)),
        ("both", Sealer::new(&key(), true)),
    ] {
        let started = Instant::now();
        let mut at = sealer.at_rest(&record.id);
        for _ in 0..ROUNDS {
            at = sealer.at_rest(&record.id);
        }
        let derive = started.elapsed();
        let started = Instant::now();
        let mut sealed = Vec::new();
        for _ in 0..ROUNDS {
            sealed = sealer.seal_record(&record, &at, facts.as_ref()).unwrap();
        }
        let seal = started.elapsed();
        let started = Instant::now();
        for _ in 0..ROUNDS {
            assert!(sealer.open_record(&sealed, &at).unwrap().is_some());
        }
        let open = started.elapsed();
        out.insert(
            name.into(),
            json!({
                "bytes": sealed.len(),
                "derive_us": micros(derive),
                "seal_us": micros(seal),
                "open_us": micros(open),
            }),
        );
    }
    Value::Object(out)
}

/// The SQLite store's file size for such sessions, per session.
async fn sqlite_size() -> Value {
    let dir = tempdir("sqlite-size");
    let path = dir.join("sessions.db");
    let store = AnyStore::open(
        &StoreUrl::Sqlite(format!("sqlite://{}", path.display())),
        Duration::from_secs(12 * 3600),
        index_entry,
        Clock::system(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    for i in 0..SQLITE_SESSIONS {
        store.create(&mut record(i)).await.unwrap();
    }
    let insert = started.elapsed();
    drop(store);
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    json!({
        "sessions": SQLITE_SESSIONS,
        "bytes_on_disk_per_session": size as f64 / SQLITE_SESSIONS as f64,
        "insert_ms_per_session": insert.as_secs_f64() * 1000.0 / SQLITE_SESSIONS as f64,
    })
}

fn compressed_size(path: &Path, program: &str, args: &[&str]) -> u64 {
    let output = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (make bench installs it)"));
    output.stdout.len() as u64
}

/// The loader `cargo leptos --split` emits beside the bundle (imported by it).
const SPLIT_LOADER: &str = "__wasm_split.______________________.js";

/// The release bundle's sizes, and first paint / hydration in Chromium. The
/// signed-in pages are lazy routes: each one's chunks (from the split
/// manifest) are measured apart from the first load.
async fn front_end(app: &TestApp, idp: &Idp) -> Value {
    let pkg = Path::new(SITE_ROOT).join("pkg");
    let size = |name: &str| {
        let path = pkg.join(name);
        json!({
            "raw": std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len(),
            "gzip": compressed_size(&path, "gzip", &["-9", "-c"]),
            "brotli": compressed_size(&path, "brotli", &["-q", "11", "-c"]),
        })
    };
    let mut files = Map::new();
    for name in [
        "gatehouse.wasm",
        "gatehouse.js",
        SPLIT_LOADER,
        "gatehouse.css",
    ] {
        files.insert(name.into(), size(name));
    }
    let manifest: Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(pkg.join("__wasm_split_manifest.json"))
            .expect("the split manifest (make bench builds with --split)"),
    )
    .unwrap();
    let mut lazy = Map::new();
    for (split, chunks) in manifest {
        // "__profile_route_view_<hash>" -> "profile"
        let route = split
            .trim_start_matches("__")
            .split("_route_view")
            .next()
            .unwrap()
            .to_string();
        let brotli: u64 = chunks
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                size(&format!("{}.wasm", c.as_str().unwrap()))["brotli"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        lazy.insert(route, json!({ "chunks": chunks, "brotli": brotli }));
    }
    let output = Command::new("node")
        .arg("end2end/bench/paint.mjs")
        .env("APP_URL", &app.base)
        .env("IDP_URL", format!("http://localhost:{}", idp.port))
        .stderr(Stdio::inherit())
        .output()
        .expect("node");
    let timing: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "paint.mjs: {e}: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    json!({ "files": files, "lazy_routes": lazy, "timing": timing })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}

/// The Markdown table and the list of budgets missed.
fn report(r: &Value) -> (String, Vec<String>) {
    let ceiling = r["ceiling"]["requests_per_sec"].as_f64().unwrap();
    let mut misses = Vec::new();
    let mut md = format!(
        "Measured {} on {} by `make bench`; wrk, {} connections, all on loopback. The rows of each store (a, b, c, many sessions) are {} rounds of {} s each, every round between two {} s runs of the bare handler sent the row's own requests by the same wrk job (path, method, headers, and for many sessions the same script handing out the cookies); a row shows its median round (by ratio to the mean of the bare runs just before and after it) and the range of the rounds' ratios. The other rows are one {} s run; the ceiling rows (plain `GET /auth/user`, no headers) are the first and last of all runs, and \"the average\" is theirs.\n\n",
        r["date"].as_str().unwrap(),
        r["machine"].as_str().unwrap(),
        CONNECTIONS,
        ROUNDS,
        ROUND_SECS,
        ROUND_SECS,
        DURATION_SECS
    );
    md.push_str("| request | store | requests/s | vs bare axum | p50 ms | p99 ms |\n");
    md.push_str("|---|---|---:|---:|---:|---:|\n");
    for run in r["ceiling"]["runs"].as_array().unwrap() {
        md.push_str(&format!(
            "| bare axum, same JSON, no session (ceiling) | – | {:.0} | 100% | {:.2} | {:.2} |\n",
            run["requests_per_sec"].as_f64().unwrap(),
            run["p50_ms"].as_f64().unwrap(),
            run["p99_ms"].as_f64().unwrap()
        ));
    }
    let ssr_baseline = r["ssr_baseline"]["requests_per_sec"].as_f64();
    if let Some(base) = ssr_baseline {
        md.push_str(&format!(
            "| `/profile`, same components for a fixed user, no session (SSR baseline) | – | {base:.0} | {:.0}% | {:.2} | {:.2} |\n",
            base / ceiling * 100.0,
            r["ssr_baseline"]["p50_ms"].as_f64().unwrap(),
            r["ssr_baseline"]["p99_ms"].as_f64().unwrap()
        ));
    }
    let many = format!("(a) `GET /auth/user`, spread over {MANY_SESSIONS} sessions");
    let labels = [
        ("auth_user", "(a) `GET /auth/user` with a session"),
        ("auth_user_many", many.as_str()),
        ("server_fn", "(b) server function `current_user`"),
        ("ssr_profile", "(c) SSR of `/profile`"),
    ];
    for (key, label) in labels {
        for store in ["memory", "sqlite", "redis", "postgres"] {
            let load = &r["stores"][store][key];
            let Some(rps) = load["requests_per_sec"].as_f64() else {
                continue;
            };
            // Against the ceiling runs around the row's median round
            // (`Bracketed`), the rounds' range, and against the run's
            // average ceiling.
            let (ratio, shown) = match load["paired_ceiling"].as_f64() {
                Some(around) => (
                    rps / around,
                    format!(
                        "{:.0}% of {around:.0} around it (rounds {:.0}–{:.0}%; {:.0}% of the average)",
                        rps / around * 100.0,
                        load["ratio_range"][0].as_f64().unwrap_or(f64::NAN) * 100.0,
                        load["ratio_range"][1].as_f64().unwrap_or(f64::NAN) * 100.0,
                        rps / ceiling * 100.0
                    ),
                ),
                None => (rps / ceiling, format!("{:.0}%", rps / ceiling * 100.0)),
            };
            let p99 = load["p99_ms"].as_f64().unwrap();
            md.push_str(&format!(
                "| {label} | {store} | {rps:.0} | {shown} | {:.2} | {p99:.2} |\n",
                load["p50_ms"].as_f64().unwrap(),
            ));
            if load["non_2xx"].as_u64().unwrap_or(0) > 0 {
                misses.push(format!(
                    "{label} on {store}: {} non-2xx answers",
                    load["non_2xx"]
                ));
            }
            if store == "postgres" {
                // No budget (issue 15 predates the store): the row is for
                // choosing a store.
            } else if key == "ssr_profile" {
                // Issue 15: ≥ 80% of the same page rendered without a session.
                if let Some(base) = ssr_baseline {
                    if rps < 0.8 * base {
                        misses.push(format!(
                            "{label} ({store}) at {:.0}% of the SSR baseline (budget ≥ 80%)",
                            rps / base * 100.0
                        ));
                    }
                }
            } else {
                // Issue 15: ≥ 60% of the ceiling on memory, ≥ 50% on SQLite and Redis.
                let budget = if store == "memory" { 0.6 } else { 0.5 };
                if ratio < budget {
                    misses.push(format!(
                        "{label} ({store}) at {:.0}% of the bare-axum ceiling runs around it (budget ≥ {:.0}%)",
                        ratio * 100.0,
                        budget * 100.0
                    ));
                }
                if p99 >= 5.0 {
                    misses.push(format!("{label} ({store}) p99 {p99:.2} ms (budget < 5 ms)"));
                }
            }
        }
    }
    if let Some(base) = ssr_baseline {
        let of_baseline: Vec<String> = ["memory", "sqlite", "redis", "postgres"]
            .iter()
            .filter_map(|store| {
                let rps = r["stores"][store]["ssr_profile"]["requests_per_sec"].as_f64()?;
                Some(format!("{store} {:.0}%", rps / base * 100.0))
            })
            .collect();
        md.push_str(&format!(
            "| (c) against the SSR baseline (budget ≥ 80%) | {} | | | | |\n",
            of_baseline.join(", ")
        ));
    }
    let one = &r["auth_user_memory_one_worker"];
    md.push_str(&format!(
        "| (a) `GET /auth/user`, `TOKIO_WORKER_THREADS=1` | memory | {:.0} | {:.0}% | {:.2} | {:.2} |\n",
        one["requests_per_sec"].as_f64().unwrap(),
        one["requests_per_sec"].as_f64().unwrap() / ceiling * 100.0,
        one["p50_ms"].as_f64().unwrap(),
        one["p99_ms"].as_f64().unwrap(),
    ));
    let counted = &r["instructions_per_request"];
    if let Some(ceiling) = counted["ceiling"]["instructions_per_request"].as_f64() {
        md.push_str(&format!(
            "\n| instructions per `GET /auth/user` (callgrind, {} requests one at a time) | instructions | vs bare axum |\n|---|---:|---:|\n\
             | bare axum, same JSON (ceiling) | {ceiling:.0} | 1.0× |\n",
            counted["ceiling"]["requests"]
        ));
        for store in ["memory", "sqlite"] {
            let Some(n) = counted[store]["instructions_per_request"].as_f64() else {
                continue;
            };
            md.push_str(&format!(
                "| Gatehouse, {store} store, signed in | {n:.0} | {:.1}× |\n",
                n / ceiling
            ));
            if n > 3.0 * ceiling {
                misses.push(format!(
                    "(a) ({store}) {:.1}× the ceiling's instructions per request (budget ≤ 3×)",
                    n / ceiling
                ));
            }
        }
    }
    let login = &r["login"];
    let storm = &r["refresh_storm"];
    let mem = &r["memory_store"];
    let sqlite = &r["sqlite_store"];
    let seal = &r["sealing"];
    let calls = storm["token_endpoint_calls"].as_u64().unwrap();
    if calls != 1 {
        misses.push(format!(
            "refresh storm made {calls} token-endpoint calls (budget: exactly 1)"
        ));
    }
    let logins = login["logins_per_sec"].as_f64().unwrap();
    if logins < 150.0 {
        misses.push(format!(
            "full logins through the BFF at {logins:.0}/s (budget ≥ 150/s sequential)"
        ));
    }
    let per_session = mem["resident_bytes_per_session"].as_f64().unwrap();
    if per_session >= 8192.0 {
        misses.push(format!(
            "memory store: {per_session:.0} B resident per session (budget < 8 KiB)"
        ));
    }
    let files = &r["front_end"]["files"];
    let first_load_brotli: u64 = ["gatehouse.wasm", "gatehouse.js", SPLIT_LOADER]
        .iter()
        .map(|name| files[*name]["brotli"].as_u64().unwrap())
        .sum();
    if first_load_brotli >= 250 * 1024 {
        misses.push(format!(
            "wasm + JS first load {:.1} KiB brotli (budget < 250 KiB)",
            first_load_brotli as f64 / 1024.0
        ));
    }
    md.push_str(&format!(
        "\n| measure | result |\n|---|---:|\n\
         | full logins through the BFF (sequential, JWKS cached, dev IdP warmed by {} logins; median of {} rounds of {}, range {:.0}–{:.0}/s) | {:.1} /s |\n\
         | BFF CPU per login (IdP excluded) | {:.2} ms |\n\
         | … of {:.2} ms per login: dev IdP (node) CPU, browser (reqwest) CPU | {:.2} ms, {:.2} ms |\n\
         | refresh storm: {} concurrent requests, expired token | {:.0} ms, {} token-endpoint call(s), {} × 200 OK |\n\
         | memory store, {} Keycloak-sized sessions ({} B of JSON each) | {:.0} B resident per session |\n\
         | SQLite store, {} such sessions | {:.0} B on disk per session |\n\
         | one such record at rest, sealed with the session's own key (`SESSION_KEY_IN_COOKIE`, default; once per record version) | {:.1} µs to seal, {:.1} µs to open, {} B (in the clear: {:.1} µs, {:.1} µs, {} B) |\n\
         | … and also with `SESSION_ENCRYPTION_KEY` | {:.1} µs to seal, {:.1} µs to open, {} B |\n\
         | deriving a session's store key from its cookie (every request) | {:.2} µs |\n",
        login["idp_warm_up_logins"],
        ROUNDS,
        LOGINS,
        login["rate_range"][0].as_f64().unwrap_or(f64::NAN),
        login["rate_range"][1].as_f64().unwrap_or(f64::NAN),
        login["logins_per_sec"].as_f64().unwrap(),
        login["bff_cpu_ms_per_login"].as_f64().unwrap(),
        login["wall_ms_per_login"].as_f64().unwrap(),
        login["idp_cpu_ms_per_login"].as_f64().unwrap(),
        login["browser_cpu_ms_per_login"].as_f64().unwrap(),
        storm["requests"],
        storm["wall_ms"].as_f64().unwrap(),
        calls,
        storm["ok"],
        mem["sessions"],
        mem["record_json_bytes"],
        per_session,
        sqlite["sessions"],
        sqlite["bytes_on_disk_per_session"].as_f64().unwrap(),
        seal["cookie_key"]["seal_us"].as_f64().unwrap(),
        seal["cookie_key"]["open_us"].as_f64().unwrap(),
        seal["cookie_key"]["bytes"],
        seal["clear"]["seal_us"].as_f64().unwrap(),
        seal["clear"]["open_us"].as_f64().unwrap(),
        seal["clear"]["bytes"],
        seal["both"]["seal_us"].as_f64().unwrap(),
        seal["both"]["open_us"].as_f64().unwrap(),
        seal["both"]["bytes"],
        seal["cookie_key"]["derive_us"].as_f64().unwrap(),
    ));
    let tabs = &r["open_tabs"];
    let idle_cpu = tabs["idle_cpu_percent_of_one_core"].as_f64().unwrap();
    let idle_commands = tabs["idle_store_commands"].as_u64().unwrap();
    let reach_ms = tabs["sign_out_reach_ms"].as_f64().unwrap();
    if idle_cpu >= 5.0 {
        misses.push(format!(
            "{} idle open tabs cost {idle_cpu:.1}% of one core (budget < 5%)",
            tabs["streams"]
        ));
    }
    if idle_commands > 0 {
        misses.push(format!(
            "idle open tabs made {idle_commands} store commands (budget: none)"
        ));
    }
    if reach_ms >= 2000.0 {
        misses.push(format!(
            "a sign-out took {reach_ms:.0} ms to reach its tabs on the other instance (budget < 2 s)"
        ));
    }
    md.push_str(&format!(
        "| {} open `/auth/events` streams ({} sessions) on one of two instances sharing Redis, idle {} s | {:.1}% of one core, {} Redis commands, {:.1} KiB resident per stream |\n\
         | sign-out on the other instance → all {} tabs of that session told | {:.0} ms |\n",
        tabs["streams"],
        tabs["sessions"],
        tabs["idle_secs"],
        idle_cpu,
        idle_commands,
        tabs["resident_bytes_per_stream"].as_f64().unwrap() / 1024.0,
        tabs["tabs_of_the_signed_out_session"],
        reach_ms,
    ));
    md.push_str("\n| front end (release) | raw | gzip | brotli |\n|---|---:|---:|---:|\n");
    for name in [
        "gatehouse.wasm",
        "gatehouse.js",
        SPLIT_LOADER,
        "gatehouse.css",
    ] {
        let f = &files[name];
        let kib = |k: &str| f[k].as_f64().unwrap() / 1024.0;
        md.push_str(&format!(
            "| {name} | {:.1} KiB | {:.1} KiB | {:.1} KiB |\n",
            kib("raw"),
            kib("gzip"),
            kib("brotli")
        ));
    }
    md.push_str(&format!(
        "| wasm + JS, first load | | | {:.1} KiB (budget < 250 KiB) |\n",
        first_load_brotli as f64 / 1024.0
    ));
    if let Some(lazy) = r["front_end"]["lazy_routes"].as_object() {
        for (route, chunks) in lazy {
            md.push_str(&format!(
                "| + `/{route}`'s lazy chunks, when first opened | | | {:.1} KiB |\n",
                chunks["brotli"].as_f64().unwrap() / 1024.0
            ));
        }
    }
    md.push_str("\n| page (headless Chromium, loopback, median of 5 cold loads) | first contentful paint | hydrated |\n|---|---:|---:|\n");
    for page in ["/", "/profile"] {
        let t = &r["front_end"]["timing"][page];
        md.push_str(&format!(
            "| `{page}` | {:.0} ms | {:.0} ms |\n",
            t["first_contentful_paint_ms"].as_f64().unwrap_or(f64::NAN),
            t["hydrated_ms"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    (md, misses)
}
