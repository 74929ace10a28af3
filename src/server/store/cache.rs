//! Stored sessions kept in this process, so a signed-in request does not go
//! to SQLite at all and reads from Redis only a revision number.
//!
//! The hard part is never serving a session that was ended, nor an older
//! copy than the store holds. Two rules give that:
//! - **every change forgets.** A write, a delete or an expiry sweep first
//!   changes the store, then removes the session from the cache and counts
//!   one more change (`changes`);
//! - **a fill proves nothing changed while it read.** A read that missed the
//!   cache notes `changes` before it queries the store and puts what it read
//!   into the cache only if `changes` is still the same. A change whose
//!   store write came before the query is seen by the query; one that came
//!   after it is counted before the fill (then the fill is refused) or
//!   removes the filled entry after it. Either way no entry outlives a later
//!   change.
//!
//! With SQLite that holds only if every change goes through this process:
//! the store takes a lock file so that no second process can open it
//! (`sqlite.rs`). With Redis, other instances change sessions too: a copy
//! is served without asking Redis only while the instance holds a lease in
//! which every change made anywhere reaches it before the change's response
//! returns (`lease.rs`), and otherwise only when its revision is the one
//! Redis holds now (`redis.rs`).

use std::sync::Mutex;

use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};

use super::{insert_bounded, rev_of, IdMap};

/// At most this many sessions are kept (about 5 KiB each for a signed-in
/// session); past it, an arbitrary one makes room.
pub(super) const CAPACITY: usize = 10_000;

/// Alive at `now` as the stores count it: in whole seconds (SQLite's column,
/// Redis' `EXAT`), so a cached copy never outlives the stored one.
fn live(record: &Record, now: OffsetDateTime) -> bool {
    record.expiry_date.unix_timestamp() > now.unix_timestamp()
}

#[derive(Debug, Default)]
pub(super) struct Cache(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Changes made so far (see the module comment).
    changes: u64,
    sessions: IdMap<Record>,
}

/// What a read notes before it queries the store (see [`Cache::fill`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Before(u64);

impl Cache {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("session cache poisoned")
    }

    /// The cached copy of session `id`, if it has not expired at `now`.
    pub(super) fn get(&self, id: &Id, now: OffsetDateTime) -> Option<Record> {
        self.inner()
            .sessions
            .get(id)
            .filter(|r| live(r, now))
            .cloned()
    }

    /// The cached copy of session `id` if it is at revision `rev`.
    pub(super) fn get_at(&self, id: &Id, rev: u64, now: OffsetDateTime) -> Option<Record> {
        self.inner()
            .sessions
            .get(id)
            .filter(|r| live(r, now) && rev_of(r) == rev)
            .cloned()
    }

    /// Noted before a read of the store that may fill the cache.
    pub(super) fn before_read(&self) -> Before {
        Before(self.inner().changes)
    }

    /// Keeps `record`, as read from the store under `key`, unless a change
    /// was made since `before` (then the read may be older than that
    /// change). Kept by store key, which only the cookie id leads to.
    pub(super) fn fill(&self, key: &Id, record: &Record, before: Before) {
        let mut inner = self.inner();
        if inner.changes != before.0 {
            return;
        }
        insert_bounded(&mut inner.sessions, CAPACITY, *key, record.clone());
    }

    /// Session `id` was changed or deleted in the store: forget it.
    pub(super) fn forget(&self, id: &Id) {
        let mut inner = self.inner();
        inner.changes += 1;
        inner.sessions.remove(id);
    }

    /// Changes may have been missed (a Redis connection broke): forget all.
    pub(super) fn forget_all(&self) {
        let mut inner = self.inner();
        inner.changes += 1;
        inner.sessions.clear();
    }

    /// Expired sessions were deleted from the store: forget them all.
    pub(super) fn forget_expired(&self, now: OffsetDateTime) {
        let mut inner = self.inner();
        inner.changes += 1;
        inner.sessions.retain(|_, r| live(r, now));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner().sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::set_rev;

    fn record(rev: u64) -> Record {
        let mut record = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(5),
        };
        set_rev(&mut record, rev);
        record
    }

    /// A read that started before a delete and finishes after it must not
    /// bring the session back: the fill is refused.
    #[test]
    fn a_fill_that_raced_a_change_is_refused() {
        let cache = Cache::default();
        let stored = record(3);
        let before = cache.before_read();
        cache.forget(&stored.id); // the delete lands while the read is out
        cache.fill(&stored.id, &stored, before);
        assert!(cache.get(&stored.id, OffsetDateTime::now_utc()).is_none());

        let before = cache.before_read();
        cache.fill(&stored.id, &stored, before);
        assert!(cache.get(&stored.id, OffsetDateTime::now_utc()).is_some());
        cache.forget(&stored.id);
        assert!(cache.get(&stored.id, OffsetDateTime::now_utc()).is_none());
    }

    #[test]
    fn a_copy_is_served_only_at_its_revision_and_before_its_expiry() {
        let cache = Cache::default();
        let stored = record(3);
        cache.fill(&stored.id, &stored, cache.before_read());
        let now = OffsetDateTime::now_utc();
        assert!(cache.get_at(&stored.id, 3, now).is_some());
        assert!(
            cache.get_at(&stored.id, 4, now).is_none(),
            "a newer revision"
        );
        let later = now + time::Duration::minutes(6);
        assert!(cache.get(&stored.id, later).is_none(), "expired");
        cache.forget_expired(later);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let cache = Cache::default();
        for _ in 0..CAPACITY + 10 {
            let stored = record(0);
            cache.fill(&stored.id, &stored, cache.before_read());
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
