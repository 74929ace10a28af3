//! A signed-in session's life: signing in (with a new session id), reading
//! the record (within its absolute lifetime) and reloading it from the store,
//! storing refreshed tokens, keeping the session alive, signing out.

use crate::server::telemetry::metrics;
use std::sync::Arc;

use time::OffsetDateTime;
use tower_sessions::SessionStore;

use super::{
    decoded::DecodedRecords,
    record::{decode_record, encode_record, record_from_data, SessionRecord, TokenSet, RECORD_KEY},
    renewals::Renewals,
    AuthSession, SessionError,
};
use crate::{
    auth::state::AuthState,
    server::store::{AnyStore, Change},
};

/// When the idle deadline was last pushed back (Unix seconds, with their
/// fraction; a whole number, as sessions written before kept it, reads too).
const ACTIVE_KEY: &str = crate::server::store::IDLE_STAMP_KEY;

/// `at` as the idle stamp keeps it. Not in whole seconds: every session
/// stamped within one second would fall due in the same instant a minute
/// later, and their renewals (each a store write, on SQLite a commit and
/// its fsync) would land together at each second's turn. `make bench`
/// saw that over 1,000 sessions signed in 45 a second: the process all but
/// stopped 30-70 ms at every second's turn (p99 12-23 ms instead of 3).
/// Stamped to the microsecond, renewals fall due as spread as the activity
/// that made them.
fn stamp(at: OffsetDateTime) -> serde_json::Value {
    let micros = at.unix_timestamp_nanos() / 1_000;
    (micros as f64 / 1e6).into()
}

/// The instant an idle stamp names, if it is one.
fn stamped(value: &serde_json::Value) -> Option<OffsetDateTime> {
    let seconds = value.as_f64().filter(|s| s.is_finite())?;
    let micros = (seconds * 1e6).round() as i128; // saturates: out of range below
    OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1_000)?).ok()
}

/// The idle deadline is pushed back at most this often (or a tenth of the idle
/// timeout, if shorter), so an active user costs one session write per minute,
/// not one per request.
const KEEP_ALIVE_EVERY: time::Duration = time::Duration::minutes(1);

/// The record that session `id`'s data holds under [`RECORD_KEY`] (`value`),
/// decoded through `decoded`; `None` when there is none.
fn decode_in(
    decoded: &DecodedRecords,
    id: tower_sessions::session::Id,
    value: Option<&serde_json::Value>,
) -> Option<Arc<SessionRecord>> {
    decoded.decode(id, value?.as_str()?)
}

/// How often a session idling out after `idle` is renewed.
fn keep_alive_every(idle: time::Duration) -> time::Duration {
    KEEP_ALIVE_EVERY.min(idle / 10)
}

impl AuthSession {
    /// Signs the session in. The session id is rotated first, so an id an
    /// attacker planted before login is worthless after it (session fixation,
    /// OWASP ASVS 5.0 V7.2.4). Returns the record this sign-in replaced (a
    /// sign-in again, or a step-up), whose tokens no one holds any more.
    pub async fn sign_in(
        &self,
        record: SessionRecord,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let replaced = self.stored_record().await?;
        self.0.cycle_id().await?;
        self.0
            .insert_value(ACTIVE_KEY, stamp(record.created_at))
            .await?;
        self.put_record(&record).await?;
        Ok(replaced)
    }

    /// The signed-in record, if any and not past its absolute lifetime at
    /// `now`. An expired record is removed on the spot: no half-logged-in state.
    /// Decoded through `decoded` (the same bytes are not parsed twice).
    pub async fn record(
        &self,
        decoded: &DecodedRecords,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<SessionRecord>>, SessionError> {
        let value = self.0.get_value(RECORD_KEY).await?;
        // After the load: the id of the session found, not the cookie's.
        let Some(id) = self.0.id() else {
            return Ok(None);
        };
        let Some(record) = decode_in(decoded, id, value.as_ref()) else {
            return Ok(None);
        };
        if now >= record.absolute_expires_at {
            self.0.flush().await?;
            metrics::sessions_ended("absolute", 1);
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// The record as the store holds it now (another request may have changed
    /// it since this request loaded the session).
    pub async fn reload_record(
        &self,
        store: &AnyStore,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let Some(id) = self.0.id() else {
            return Ok(None);
        };
        let Some(stored) = store
            .load(&id)
            .await
            .map_err(tower_sessions::session::Error::Store)?
        else {
            return Ok(None);
        };
        Ok(record_from_data(&stored.data))
    }

    /// Replaces the stored record with `refreshed` (new tokens), unless the
    /// stored tokens are no longer `previous` (then they are newer: keep
    /// them). Written before this returns, so requests waiting for the
    /// refresh read it from the store. `false` when the session has ended
    /// meanwhile: the new tokens are then dropped, not stored.
    pub async fn store_refreshed(
        &self,
        store: &AnyStore,
        previous: &TokenSet,
        refreshed: &SessionRecord,
    ) -> Result<bool, SessionError> {
        let Some(id) = self.0.id() else {
            return Ok(false);
        };
        let encoded = encode_record(refreshed);
        let written = store
            .update(&id, |stored| {
                let current = record_from_data(&stored.data);
                if current.is_some_and(|c| !c.tokens.same_as(previous)) {
                    return Change::Keep(());
                }
                stored.data.insert(RECORD_KEY.to_string(), encoded.clone());
                Change::Write(())
            })
            .await
            .map_err(tower_sessions::session::Error::Store)?;
        self.adopt().await?;
        Ok(written.is_some())
    }

    /// This request's copy of the record, as stored (no lifetime check).
    async fn stored_record(&self) -> Result<Option<SessionRecord>, SessionError> {
        Ok(self
            .0
            .get_value(RECORD_KEY)
            .await?
            .as_ref()
            .and_then(decode_record))
    }

    /// Replaces this request's copy of the record (saved with the response).
    async fn put_record(&self, record: &SessionRecord) -> Result<(), SessionError> {
        self.0
            .insert_value(RECORD_KEY, encode_record(record))
            .await?;
        Ok(())
    }

    /// Ends the session: the record is deleted from the store and the cookie removed.
    pub async fn sign_out(&self) -> Result<Option<SessionRecord>, SessionError> {
        let record = self.stored_record().await?;
        self.0.flush().await?;
        Ok(record)
    }

    /// Activity keeps a signed-in session alive: when the idle deadline was
    /// last pushed back more than a minute ago (or a tenth of the idle
    /// timeout), push it back to now + idle. That is a change to this
    /// request's copy, saved with the response (and its cookie renewed) by a
    /// compare-and-set: if the session ended or another write landed while
    /// the request ran, nothing is written back. One request renews, the
    /// others of the session meanwhile do not (`renewals`). Returns the idle
    /// deadline.
    pub async fn keep_alive(
        &self,
        renewals: &Renewals,
        idle: time::Duration,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, SessionError> {
        let active_at = self
            .0
            .get_value(ACTIVE_KEY)
            .await?
            .as_ref()
            .and_then(stamped);
        let every = keep_alive_every(idle);
        if let Some(at) = active_at {
            let renewing = || self.0.id().is_none_or(|id| renewals.claim(id, now, every));
            if now - at < every || !renewing() {
                return Ok(at + idle);
            }
        }
        self.0.insert_value(ACTIVE_KEY, stamp(now)).await?;
        Ok(now + idle)
    }

    /// The signed-in record and its idle deadline, keeping the session alive;
    /// `None` when anonymous. Every "who is this?" goes through here.
    pub async fn signed_in(
        &self,
        state: &AuthState,
    ) -> Result<Option<(Arc<SessionRecord>, OffsetDateTime)>, SessionError> {
        if let Some(unchanged) = self.signed_in_unchanged(state).await? {
            return Ok(Some(unchanged));
        }
        let Some(record) = self.record(&state.decoded, state.clock.now()).await? else {
            return Ok(None);
        };
        let record = match crate::auth::refresh::current_claims(state, self, record).await {
            Ok(record) => record,
            Err(crate::auth::refresh::RefreshError::SessionEnded) => return Ok(None),
            Err(
                crate::auth::refresh::RefreshError::IdpUnavailable(why)
                | crate::auth::refresh::RefreshError::Refused(why),
            ) => {
                tracing::warn!(%why, "claims could not be refreshed");
                return Err(SessionError::IdpUnavailable);
            }
        };
        let deadline = self
            .keep_alive(
                &state.renewals,
                state.config.session.idle_timeout,
                state.clock.now(),
            )
            .await?;
        Ok(Some((record, deadline)))
    }
}

impl AuthSession {
    /// [`Self::signed_in`] when the answer changes nothing: read from the
    /// store's copy of the session, shared rather than copied
    /// ([`AnyStore::load_shared`]: the same read, the same rules for the
    /// copy this process keeps), the record found by its tag in `decoded`
    /// and the idle deadline from its stamp. A signed-in request used to
    /// copy the whole record twice (tower-sessions' load hands out its own
    /// copy, and each value read is cloned again); over 1,000 sessions the
    /// first copy reads 5 KiB that is not in the CPU's cache.
    ///
    /// `None` whenever the answer would change the session (no record, past
    /// its absolute lifetime, claims due for a refresh, the idle renewal
    /// due) or this request has changed its own copy: then the full path
    /// loads the request's copy and decides everything from it, as if this
    /// had not looked. What is answered here is what the full path would
    /// have answered from a load at the same moment; the request's own copy
    /// stays unloaded, so nothing is saved.
    async fn signed_in_unchanged(
        &self,
        state: &AuthState,
    ) -> Result<Option<(Arc<SessionRecord>, OffsetDateTime)>, SessionError> {
        let Some(id) = self.0.id().filter(|_| !self.0.is_modified()) else {
            return Ok(None);
        };
        let Some(stored) = state
            .store
            .load_shared(&id)
            .await
            .map_err(tower_sessions::session::Error::Store)?
        else {
            return Ok(None);
        };
        let Some(record) = decode_in(&state.decoded, id, stored.data.get(RECORD_KEY)) else {
            return Ok(None);
        };
        let now = state.clock.now();
        if now >= record.absolute_expires_at
            || !crate::auth::refresh::claims_current(&record.tokens, now)
        {
            return Ok(None);
        }
        let idle = state.config.session.idle_timeout;
        let Some(at) = stored.data.get(ACTIVE_KEY).and_then(stamped) else {
            return Ok(None);
        };
        if now - at >= keep_alive_every(idle) {
            return Ok(None);
        }
        Ok(Some((record, at + idle)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_stamp_keeps_the_instant_within_a_second() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_796_419_414_952_245_123).unwrap();
        let later = at + time::Duration::milliseconds(300);
        // To the microsecond, and two instants of one second stay apart.
        assert_eq!(
            stamped(&stamp(at)),
            Some(at.replace_nanosecond(952_245_000).unwrap())
        );
        assert_eq!(
            stamped(&stamp(later)).unwrap() - stamped(&stamp(at)).unwrap(),
            time::Duration::milliseconds(300)
        );
        // A stamp written in whole seconds (before) still reads.
        assert_eq!(
            stamped(&serde_json::json!(1_796_419_414)),
            OffsetDateTime::from_unix_timestamp(1_796_419_414).ok()
        );
        // Anything else is no stamp (the session is renewed).
        for not in [
            serde_json::json!("1796419414"),
            serde_json::json!(null),
            serde_json::json!(1e300),
        ] {
            assert_eq!(stamped(&not), None, "{not}");
        }
    }
}
