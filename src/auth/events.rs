//! `GET /auth/events`: a server-sent-events stream that tells an open tab the
//! moment its session ends, whatever ended it (logout in another tab,
//! back-channel logout, revocation from `/sessions`, a refused refresh, a
//! timeout). It reads the store, so it works across instances sharing Redis.
//! It is not activity: watching never extends the session.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::stream;
use tower_sessions::{session::Id, SessionStore};

use super::state::AuthState;
use super::{
    api_error::ApiError,
    session::{record_from_data, AuthSession},
};
use crate::server::{clock::Clock, store::AnyStore};

/// How often an open stream re-checks its session (the "within 2 s" budget).
const POLL: Duration = Duration::from_secs(1);

async fn still_signed_in(store: &AnyStore, clock: &Clock, id: &Id) -> bool {
    match store.load(id).await {
        Ok(Some(stored)) => {
            let now = clock.now();
            stored.expiry_date > now
                && record_from_data(&stored.data).is_some_and(|r| r.absolute_expires_at > now)
        }
        Ok(None) => false,
        // A store hiccup is not a sign-out; the next real request decides.
        Err(_) => true,
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
        let (store, clock, id, _permit) = watch?;
        if let Some(id) = id {
            while still_signed_in(&store, &clock, &id).await {
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
