//! Stored sessions kept in this process, so a signed-in request does not go
//! to SQLite at all and reads from Redis only a revision number.
//!
//! The hard part is never serving a session that was ended, nor an older
//! copy than the store holds. Two rules give that:
//! - **every change forgets.** A write, a delete or an expiry sweep first
//!   changes the store, then removes the session from the cache and counts
//!   one more change (`changes`);
//! - **a fill proves its session did not change while it read.** A read
//!   that missed the cache notes `changes` before it queries the store and
//!   puts what it read into the cache only if its session's last change
//!   was counted no later than that. A change whose store write came before
//!   the query is seen by the query; one that came after it is counted
//!   before the fill (then the fill is refused) or removes the filled entry
//!   after it. Either way no entry outlives a later change. (Each session's
//!   last change is remembered for the last [`CHANGED_CAPACITY`] sessions
//!   changed; a change that is not, or that may concern any session, such
//!   as an expiry sweep or a lost Redis connection, counts for all.
//!   Counting every change against every fill, as before, refused all
//!   fills while any session was being written: when 1,000 sessions renew
//!   at once, every read of one already renewed went to the store.)
//!
//! With SQLite that holds only if every change goes through this process:
//! the store takes a lock file so that no second process can open it
//! (`sqlite.rs`). With Redis, other instances change sessions too: a copy
//! is served without asking Redis only while the instance holds a lease in
//! which every change made anywhere reaches it before the change's response
//! returns (`lease.rs`), and otherwise only when its revision is the one
//! Redis holds now (`redis.rs`).

use std::sync::{Arc, Mutex};

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

/// Sessions whose last change is remembered one by one (8 bytes and a key
/// each); past it, all count as changed now.
const CHANGED_CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
struct Inner {
    /// Changes made so far (see the module comment).
    changes: u64,
    /// The count at each session's last change, for the sessions changed
    /// since `floor` was set.
    changed: IdMap<u64>,
    /// The count at the last change of every session not in `changed`, at
    /// most.
    floor: u64,
    /// Shared: a read takes a reference, not a copy (`AnyStore::load_shared`;
    /// with 1,000 sessions read in turn a 5 KiB copy reads memory that is
    /// not in the CPU's cache).
    sessions: IdMap<Arc<Record>>,
}

impl Inner {
    /// Counts a change of every session.
    fn changed_all(&mut self) {
        self.changes += 1;
        self.floor = self.changes;
        self.changed.clear();
    }
}

/// What a read notes before it queries the store (see [`Cache::fill`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Before(u64);

impl Cache {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("session cache poisoned")
    }

    /// The cached copy of session `id`, if it has not expired at `now`.
    pub(super) fn get(&self, id: &Id, now: OffsetDateTime) -> Option<Arc<Record>> {
        self.inner()
            .sessions
            .get(id)
            .filter(|r| live(r, now))
            .cloned()
    }

    /// The cached copy of session `id` if it is at revision `rev`.
    pub(super) fn get_at(&self, id: &Id, rev: u64, now: OffsetDateTime) -> Option<Arc<Record>> {
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

    /// Keeps `record`, as read from the store under `key`, unless session
    /// `key` changed since `before` (then the read may be older than that
    /// change). Kept by store key, which only the cookie id leads to.
    pub(super) fn fill(&self, key: &Id, record: &Arc<Record>, before: Before) {
        let record = record.clone();
        let mut inner = self.inner();
        let last_change = inner.changed.get(key).copied().unwrap_or(inner.floor);
        if last_change > before.0 {
            return;
        }
        insert_bounded(&mut inner.sessions, CAPACITY, *key, record);
    }

    /// Session `id` was changed or deleted in the store: forget it.
    pub(super) fn forget(&self, id: &Id) {
        let mut inner = self.inner();
        if inner.changed.len() >= CHANGED_CAPACITY && !inner.changed.contains_key(id) {
            inner.changed_all();
        } else {
            inner.changes += 1;
            let at = inner.changes;
            inner.changed.insert(*id, at);
        }
        inner.sessions.remove(id);
    }

    /// Changes may have been missed (a Redis connection broke): forget all.
    pub(super) fn forget_all(&self) {
        let mut inner = self.inner();
        inner.changed_all();
        inner.sessions.clear();
    }

    /// Expired sessions were deleted from the store: forget them all.
    pub(super) fn forget_expired(&self, now: OffsetDateTime) {
        let mut inner = self.inner();
        inner.changed_all();
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

    fn record(rev: u64) -> Arc<Record> {
        let mut record = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(5),
        };
        set_rev(&mut record, rev);
        Arc::new(record)
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

    /// A change of another session does not hold a fill back; a change
    /// that may concern every session does, and so does a change of a
    /// session no longer remembered one by one.
    #[test]
    fn a_fill_is_refused_only_for_a_change_that_may_be_its_own() {
        let now = OffsetDateTime::now_utc();
        let cache = Cache::default();
        let (mine, other) = (record(1), record(1));
        let before = cache.before_read();
        cache.forget(&other.id);
        cache.fill(&mine.id, &mine, before);
        assert!(
            cache.get(&mine.id, now).is_some(),
            "another session changed"
        );
        cache.forget(&mine.id);
        // Its own change before the read: seen by the read, so kept.
        let before = cache.before_read();
        cache.fill(&mine.id, &mine, before);
        assert!(cache.get(&mine.id, now).is_some());

        for everyone in [Cache::forget_all as fn(&Cache), |c: &Cache| {
            c.forget_expired(OffsetDateTime::now_utc())
        }] {
            cache.forget(&mine.id);
            let before = cache.before_read();
            everyone(&cache);
            cache.fill(&mine.id, &mine, before);
            assert!(
                cache.get(&mine.id, now).is_none(),
                "a change of every session"
            );
        }

        let before = cache.before_read();
        for _ in 0..CHANGED_CAPACITY {
            cache.forget(&Id::default());
        }
        cache.forget(&other.id); // past what is remembered: counts for all
        cache.fill(&mine.id, &mine, before);
        assert!(
            cache.get(&mine.id, now).is_none(),
            "changes forgotten one by one"
        );
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
