//! `GET /auth/events`: a server-sent-events stream that tells an open tab the
//! moment its session ends, whatever ended it (logout in another tab,
//! back-channel logout, revocation from `/sessions`, a refused refresh, a
//! timeout). It is pushed, not polled: the stream reads the session once,
//! then sleeps until the store says the session was deleted (on any instance
//! sharing Redis) or until the session's own deadline, when it reads it again
//! (activity elsewhere may have pushed the idle deadline back). An idle tab
//! costs no store read. Watching never extends the session. When the
//! process shuts down, every stream ends with a `restart` event instead,
//! and the tab's EventSource reconnects to another instance.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::stream;
use time::OffsetDateTime;
use tower_sessions::{session::Id, SessionStore};

use super::state::AuthState;
use super::{
    api_error::ApiError,
    session::{record_from_data, AuthSession},
};
use crate::server::{
    clock::Clock,
    store::{AnyStore, Wake},
};

/// How soon a tab reconnects after this instance closed its stream for
/// shutting down (the SSE `retry` field; the browser's EventSource then
/// reconnects by itself, through the load balancer, to an instance that is
/// still up).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// After a failed store read, when to read again (a store hiccup is not a
/// sign-out; the next real request decides meanwhile).
const STORE_RETRY: Duration = Duration::from_secs(5);

/// Until when the signed-in session `id` lives as the store holds it now
/// (its idle or absolute deadline, whichever comes first); `None` once it has
/// ended or is not signed in.
async fn alive_until(store: &AnyStore, clock: &Clock, id: &Id) -> Option<OffsetDateTime> {
    match store.load(id).await {
        Ok(Some(stored)) => {
            let record = record_from_data(&stored.data)?;
            let until = stored.expiry_date.min(record.absolute_expires_at);
            (until > clock.now()).then_some(until)
        }
        Ok(None) => None,
        Err(_) => Some(clock.now() + STORE_RETRY),
    }
}

/// Returns when session `id` has ended.
async fn until_ended(store: &AnyStore, clock: &Clock, id: Id) {
    // Registered before the first read, so an end in between is not missed.
    let mut watch = store.watch_end(id);
    while let Some(until) = alive_until(store, clock, &id).await {
        let left = Duration::try_from(until - clock.now()).unwrap_or(Duration::ZERO);
        tokio::select! {
            wake = watch.wake() => if wake == Wake::Ended {
                return;
            },
            () = tokio::time::sleep(left) => {}
        }
    }
}

pub async fn events(State(state): State<AuthState>, session: AuthSession) -> Response {
    let id = session.id().and_then(|id| id.parse::<Id>().ok());
    let key = id.map(|id| id.to_string()).unwrap_or_default();
    let Some(permit) = state.event_streams.admit(&key) else {
        tracing::warn!("too many open /auth/events streams");
        return ApiError::TooManyStreams.into_response();
    };
    let store = state.store.clone();
    let clock = state.clock.clone();
    let ended = stream::unfold(Some((store, clock, id, permit)), |watch| async move {
        let (store, clock, id, permit) = watch?;
        let ended = async {
            if let Some(id) = id {
                until_ended(&store, &clock, id).await;
            }
        };
        let last = tokio::select! {
            // `biased`: a stream asked for while the process shuts down
            // ends with `restart` even for a session that is already over
            // (the tab asks again elsewhere and hears `ended` there).
            biased;
            () = permit.drained() => Event::default()
                .event("restart")
                .retry(RECONNECT_AFTER)
                .data("restart"),
            () = ended => Event::default().event("ended").data("ended"),
        };
        Some((Ok::<_, Infallible>(last), None))
    });
    Sse::new(ended)
        .keep_alive(KeepAlive::default())
        .into_response()
}
