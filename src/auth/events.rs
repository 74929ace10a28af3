//! `GET /auth/events`: a server-sent-events stream that tells an open tab the
//! moment its session ends, whatever ended it (logout in another tab,
//! back-channel logout, revocation from `/sessions`, a refused refresh, a
//! timeout). It reads the store, so it works across instances sharing Redis.
//! It is not activity: watching never extends the session.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::stream;
use time::OffsetDateTime;
use tower_sessions::{session::Id, SessionStore};

use super::{
    error::json_error,
    session::{record_from_data, AuthSession},
};
use crate::server::{config::LimitsConfig, state::AppState, store::AnyStore};

/// How many `/auth/events` streams are open, on this instance and per
/// session. Each open stream holds a task and a connection: without a cap,
/// one cookie could open them until the instance runs out.
pub struct StreamLimits {
    max: usize,
    per_session: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One open stream; dropping it (the tab went away) gives its place back.
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    session: String,
}

impl StreamLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            max: config.event_streams_max as usize,
            per_session: config.event_streams_per_session as usize,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// A place for one more stream of `session`, if both caps allow it.
    fn admit(self: &Arc<Self>, session: &str) -> Option<StreamPermit> {
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

/// How often an open stream re-checks its session (the "within 2 s" budget).
const POLL: Duration = Duration::from_secs(1);

async fn still_signed_in(store: &AnyStore, id: &Id) -> bool {
    match store.load(id).await {
        Ok(Some(stored)) => {
            let now = OffsetDateTime::now_utc();
            stored.expiry_date > now
                && record_from_data(&stored.data).is_some_and(|r| r.absolute_expires_at > now)
        }
        Ok(None) => false,
        // A store hiccup is not a sign-out; the next real request decides.
        Err(_) => true,
    }
}

pub async fn events(State(state): State<AppState>, session: AuthSession) -> Response {
    let id = session.id().and_then(|id| id.parse::<Id>().ok());
    let key = id.map(|id| id.to_string()).unwrap_or_default();
    let Some(permit) = state.event_streams.admit(&key) else {
        tracing::warn!("too many open /auth/events streams");
        let mut response = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            "Too many open session watchers; close some tabs.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        return response;
    };
    let store = state.store.clone();
    let ended = stream::unfold(Some((store, id, permit)), |watch| async move {
        let (store, id, _permit) = watch?;
        if let Some(id) = id {
            while still_signed_in(&store, &id).await {
                tokio::time::sleep(POLL).await;
            }
        }
        Some((
            Ok::<_, Infallible>(Event::default().event("ended").data("ended")),
            None,
        ))
    });
    Sse::new(ended)
        .keep_alive(KeepAlive::default())
        .into_response()
}
