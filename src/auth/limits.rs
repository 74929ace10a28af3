//! Limits on the sign-in routes, where an anonymous client makes us store
//! state and call the IdP (OWASP ASVS 5.0 §2.4 anti-automation):
//!
//! - `/auth/login`, `/auth/signup` and `/auth/callback` are rate-limited per
//!   client IP (`AUTH_RATE_LIMIT_PER_MINUTE`, tower_governor's GCRA): 429;
//! - every instance starts at most `PENDING_LOGINS_MAX` login transactions per
//!   pending-login lifetime, whatever the IPs ([`LoginBudget`]): 429. Each
//!   browser also holds at most `MAX_PENDING_LOGINS` (`auth::session`).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tower_governor::{
    governor::GovernorConfigBuilder,
    key_extractor::{KeyExtractor, PeerIpKeyExtractor, SmartIpKeyExtractor},
    GovernorError, GovernorLayer,
};

use super::error::standalone_page;
use crate::server::config::LimitsConfig;

/// The client a request counts against: its IP, with IPv6 addresses cut to
/// their /64 (one subscriber usually holds a whole /64, so counting single
/// IPv6 addresses would not limit anyone).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp {
    trust_forwarded: bool,
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        let ip = if self.trust_forwarded {
            SmartIpKeyExtractor.extract(req)?
        } else {
            PeerIpKeyExtractor.extract(req)?
        };
        Ok(match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        })
    }
}

pub type AuthRateLimit = GovernorLayer<ClientIp, governor::middleware::NoOpMiddleware, Body>;

/// The per-IP limit on the login routes, and a task that forgets idle IPs so
/// the limiter's memory stays bounded.
pub fn auth_rate_limit(limits: &LimitsConfig) -> AuthRateLimit {
    let per_minute = limits.auth_per_minute.max(1);
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_secs(60) / per_minute)
        .burst_size(per_minute)
        .key_extractor(ClientIp {
            trust_forwarded: limits.trust_forwarded,
        })
        .finish()
        .expect("period and burst are non-zero");
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            limiter.retain_recent();
        }
    });
    GovernorLayer::new(config).error_handler(|error| match error {
        GovernorError::TooManyRequests { wait_time, .. } => too_many(
            "Too many sign-in attempts from your network",
            wait_time.max(1),
        ),
        // No client address: refuse rather than let the request go unlimited.
        _ => too_many("Your address could not be determined", 60),
    })
}

/// The total number of login transactions one instance starts per pending-
/// login lifetime. A bucket of `max` refilled at `max` per lifetime: however
/// many IPs take part, no more than about `max` pending logins exist at once,
/// so the session store cannot be filled with them.
pub struct LoginBudget(DefaultDirectRateLimiter);

impl LoginBudget {
    /// `lifetime`: how long a pending login lives (`session::PENDING_LOGIN_TTL`).
    pub fn new(limits: &LimitsConfig, lifetime: Duration) -> Self {
        let max = NonZeroU32::new(limits.pending_logins_max).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(lifetime / max.get())
            .expect("the pending-login lifetime is non-zero")
            .allow_burst(max);
        Self(RateLimiter::direct(quota))
    }

    /// Takes one login from the budget; when it is spent, the 429 page to
    /// answer with instead.
    pub fn refusal(&self) -> Option<Response> {
        self.0.check().err().map(|not_until| {
            let wait = not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs()
                .max(1);
            tracing::warn!(wait, "pending-login budget spent; refusing new logins");
            too_many("Too many sign-ins are in progress right now", wait)
        })
    }
}

/// How many `/auth/events` streams are open, on this instance and per
/// session. Each open stream holds a task and a connection: without a cap,
/// one cookie could open them until the instance runs out.
pub struct StreamLimits {
    max: usize,
    per_session: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
    /// Set once the process is shutting down: every stream then ends with
    /// a `restart` event, and the tabs reconnect to another instance.
    draining: tokio::sync::watch::Sender<bool>,
}

/// One open stream; dropping it (the tab went away) gives its place back.
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    session: String,
}

impl StreamPermit {
    /// Returns once the process starts shutting down.
    pub async fn drained(&self) {
        self.limits.drained().await
    }
}

impl StreamLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            max: config.event_streams_max as usize,
            per_session: config.event_streams_per_session as usize,
            open: Mutex::new((0, HashMap::new())),
            draining: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The process is shutting down: every open stream, and every one
    /// asked for from now on, ends at once (with a `restart` event).
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// Returns once [`Self::drain`] has been called.
    pub async fn drained(&self) {
        let mut draining = self.draining.subscribe();
        // The sender lives as long as `self`: an error cannot happen here.
        let _ = draining.wait_for(|on| *on).await;
    }

    /// How many streams are open now.
    pub fn open(&self) -> usize {
        self.open.lock().expect("stream counts poisoned").0
    }

    /// A place for one more stream of `session`, if both caps allow it.
    pub fn admit(self: &Arc<Self>, session: &str) -> Option<StreamPermit> {
        let mut open = self.open.lock().expect("stream counts poisoned");
        let (total, by_session) = &mut *open;
        let mine = by_session.get(session).copied().unwrap_or(0);
        // An anonymous stream ends at once: only the instance cap applies.
        if *total >= self.max || (!session.is_empty() && mine >= self.per_session) {
            return None;
        }
        *total += 1;
        by_session.insert(session.to_string(), mine + 1);
        Some(StreamPermit {
            limits: self.clone(),
            session: session.to_string(),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("stream counts poisoned");
        let (total, by_session) = &mut *open;
        *total -= 1;
        if let Some(n) = by_session.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                by_session.remove(&self.session);
            }
        }
    }
}

fn too_many(title: &str, retry_after_secs: u64) -> Response {
    let inner = format!(
        r#"<h1>{title}</h1>
<p>Please wait {retry_after_secs} second{s} and try again.</p>
<p><a href="/">Back to Home</a></p>"#,
        s = if retry_after_secs == 1 { "" } else { "s" }
    );
    let mut response = standalone_page(
        StatusCode::TOO_MANY_REQUESTS,
        title,
        r#"class="auth-error" data-reason="rate_limited""#,
        &inner,
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after_secs.to_string()).expect("digits are a valid header"),
    );
    response
}
