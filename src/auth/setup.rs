//! Setting the core up for a configuration: its state and its session layer
//! (what an app mounting the core calls once, at start-up).

use std::{sync::Arc, time::Duration};

use tower_sessions::Expiry;

use super::{
    idp::IdpError,
    idps::Idps,
    limits::{LoginBudget, StreamLimits},
    session::{index_entry, SessionLayer, PENDING_LOGIN_TTL},
    state::{AuthShared, AuthState},
};
use crate::server::{
    clock::Clock,
    config::{Config, StoreUrl},
    db::AppDb,
    store::{AnyStore, Sealer},
};

impl AuthState {
    /// Everything the core needs for `config`: opens (and migrates) the
    /// session store and the app database, starts the expiry sweep, and
    /// checks every IdP that answers. Fails only on what the operator must
    /// fix; an IdP that does not answer yet is discovered on the first login.
    pub async fn open(config: Arc<Config>) -> Result<Self, String> {
        Self::open_with_clock(config, Clock::system()).await
    }

    /// [`AuthState::open`] with every expiry decided by `clock` (tests move
    /// an adjustable clock instead of waiting for tokens to expire).
    pub async fn open_with_clock(config: Arc<Config>, clock: Clock) -> Result<Self, String> {
        let store = AnyStore::open(
            &config.session.store,
            config.session.absolute_timeout.unsigned_abs(),
            index_entry,
            clock.clone(),
        )
        .await?
        .sealed_with(Sealer::new(
            &config.session.encryption_keys,
            config.session.key_in_cookie,
        ));
        if config.session.store == StoreUrl::Memory && !config.session.encryption_keys.is_empty() {
            tracing::warn!(
                "SESSION_ENCRYPTION_KEY has no effect on the memory store, which keeps nothing at rest"
            );
        }
        if config.session.key_in_cookie && config.session.store != StoreUrl::Memory {
            tracing::info!(
                "session records are sealed with keys only their cookies hold \
                 (SESSION_KEY_IN_COOKIE=1): sessions ended elsewhere cannot have \
                 their refresh tokens revoked"
            );
        }
        store.spawn_expiry_sweeper();
        let db = AppDb::open(&config.app_database).await?;
        let idps = Arc::new(Idps::new(config.clone(), &clock));
        check_identity_providers(&idps).await?;
        let pending_lifetime =
            Duration::try_from(PENDING_LOGIN_TTL).expect("a positive pending-login lifetime");
        Ok(Self::new(AuthShared {
            idps,
            store,
            db,
            relay_http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| format!("relay HTTP client: {e}"))?,
            relay_nonces: Default::default(),
            login_budget: Arc::new(LoginBudget::new(&config.limits, pending_lifetime)),
            event_streams: Arc::new(StreamLimits::new(&config.limits)),
            decoded: Default::default(),
            renewals: Default::default(),
            config,
            clock,
        }))
    }

    /// The session layer: an opaque id in an `HttpOnly`, `SameSite=Lax`,
    /// `Path=/` cookie without `Domain`, `Secure` and `__Host-` on https; the
    /// idle timeout renewed by activity. Every route that reads a session
    /// needs it.
    pub fn session_layer(&self) -> SessionLayer {
        let config = &self.config;
        SessionLayer::new(
            self.store.clone(),
            cookie_name(config),
            config.base_url.is_https(),
            Expiry::OnInactivity(config.session.idle_timeout),
        )
    }
}

/// The session cookie's name: `__Host-` prefixed on https, which makes the
/// browser insist on Secure, Path=/ and no Domain.
pub fn cookie_name(config: &Config) -> &'static str {
    if config.base_url.is_https() {
        "__Host-gatehouse_session"
    } else {
        "gatehouse_session"
    }
}

/// The start-up self-check against each IdP that answers: its discovery
/// document must name exactly our issuer (OIDC Discovery §4.3) and it must
/// support PKCE S256 (RFC 9700 §2.1.1); otherwise Gatehouse refuses to start,
/// with one line saying why. An IdP that does not answer yet is not a reason:
/// the app serves public pages and discovers it on the next login.
async fn check_identity_providers(idps: &Idps) -> Result<(), String> {
    let checks = idps.all().iter().map(|oidc| async move {
        let idp = &oidc.config().name;
        match tokio::time::timeout(std::time::Duration::from_secs(10), oidc.provider()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(IdpError::Misconfigured(why))) => Err(format!(
                "identity provider {idp} ({}): {why}",
                oidc.config().issuer.as_str()
            )),
            Ok(Err(e)) => {
                tracing::warn!(%idp, error = %e, "identity provider not available yet; will retry on first login");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(%idp, "identity provider discovery timed out; will retry on first login");
                Ok(())
            }
        }
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()
        .map(|_| ())
}
