//! The in-process store (`SESSION_STORE=memory`): one map under a mutex, with
//! the owner index beside it, so a revision check, a write and its index
//! update happen as one step.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};

use super::{rev_of, set_rev, IdMap, Owner, OwnerEntry, Written};

#[derive(Debug, Default)]
pub(super) struct Memory(Mutex<Maps>);

#[derive(Debug, Default)]
struct Maps {
    sessions: IdMap<Stored>,
    by_sub: HashMap<String, HashSet<Id>>,
    by_sid: HashMap<String, HashSet<Id>>,
}

#[derive(Debug)]
struct Stored {
    /// The record as written, its revision in its data. Shared: a load
    /// takes a reference, not a copy (`AnyStore::load_shared`).
    record: Arc<Record>,
    owner: Option<OwnerEntry>,
}

impl Maps {
    fn live(&self, id: &Id, now: OffsetDateTime) -> Option<&Stored> {
        self.sessions.get(id).filter(|s| s.record.expiry_date > now)
    }

    fn index(&mut self, id: Id, owner: &Option<OwnerEntry>) {
        if let Some(owner) = owner {
            self.by_sub.entry(owner.sub.clone()).or_default().insert(id);
            if let Some(sid) = &owner.sid {
                self.by_sid.entry(sid.clone()).or_default().insert(id);
            }
        }
    }

    fn unindex(&mut self, id: &Id, owner: &Option<OwnerEntry>) {
        fn remove(map: &mut HashMap<String, HashSet<Id>>, key: &str, id: &Id) {
            if let Some(set) = map.get_mut(key) {
                set.remove(id);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        }
        if let Some(owner) = owner {
            remove(&mut self.by_sub, &owner.sub, id);
            if let Some(sid) = &owner.sid {
                remove(&mut self.by_sid, sid, id);
            }
        }
    }

    fn remove(&mut self, id: &Id) {
        if let Some(stored) = self.sessions.remove(id) {
            self.unindex(id, &stored.owner);
        }
    }

    fn put(&mut self, record: Arc<Record>, owner: Option<OwnerEntry>) {
        let id = record.id;
        self.remove(&id);
        self.index(id, &owner);
        self.sessions.insert(id, Stored { record, owner });
    }
}

impl Memory {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.0.lock().expect("memory store poisoned")
    }

    pub(super) fn load(&self, id: &Id, now: OffsetDateTime) -> Option<Arc<Record>> {
        self.maps().live(id, now).map(|s| s.record.clone())
    }

    /// Stores a new session; `false` when its id is taken.
    pub(super) fn create(&self, record: &Record, owner: Option<OwnerEntry>) -> bool {
        let mut stored = record.clone();
        set_rev(&mut stored, 0);
        let stored = Arc::new(stored);
        let mut maps = self.maps();
        if maps.sessions.contains_key(&record.id) {
            return false;
        }
        maps.put(stored, owner);
        true
    }

    pub(super) fn write(
        &self,
        record: &Record,
        base: u64,
        owner: Option<OwnerEntry>,
        now: OffsetDateTime,
    ) -> Written {
        let mut stored = record.clone();
        set_rev(&mut stored, base + 1);
        let stored = Arc::new(stored);
        let mut maps = self.maps();
        let Some(current) = maps.live(&record.id, now) else {
            return Written::Gone;
        };
        if rev_of(&current.record) != base {
            return Written::Conflict;
        }
        maps.put(stored, owner);
        Written::Yes
    }

    pub(super) fn delete(&self, id: &Id) {
        self.maps().remove(id);
    }

    /// How many live sessions are signed in.
    pub(super) fn signed_in(&self, now: OffsetDateTime) -> usize {
        self.maps()
            .sessions
            .values()
            .filter(|s| s.owner.is_some() && s.record.expiry_date > now)
            .count()
    }

    pub(super) fn sessions_of(&self, owner: &Owner, now: OffsetDateTime) -> Vec<Id> {
        let maps = self.maps();
        let ids = match owner {
            Owner::Sub(sub) => maps.by_sub.get(sub),
            Owner::Sid(sid) => maps.by_sid.get(sid),
        };
        ids.into_iter()
            .flatten()
            .filter(|id| maps.live(id, now).is_some())
            .copied()
            .collect()
    }

    /// Every expired session, signed in or not (a session holding only a
    /// pending login is in the map too, and must not stay forever).
    /// Deletes every expired session: (how many, how many were signed in).
    pub(super) fn delete_expired(&self, now: OffsetDateTime) -> (usize, usize) {
        let mut maps = self.maps();
        let expired: Vec<(Id, bool)> = maps
            .sessions
            .iter()
            .filter(|(_, s)| s.record.expiry_date <= now)
            .map(|(id, s)| (*id, s.owner.is_some()))
            .collect();
        for (id, _) in &expired {
            maps.remove(id);
        }
        let signed_in = expired.iter().filter(|(_, signed_in)| *signed_in).count();
        (expired.len(), signed_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_in: time::Duration) -> Record {
        Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: OffsetDateTime::now_utc() + expires_in,
        }
    }

    /// An anonymous session (say, one `/auth/login` without a cookie) is not
    /// in the owner index; the sweep must delete it all the same.
    #[test]
    fn the_sweep_deletes_expired_anonymous_sessions_too() {
        let memory = Memory::default();
        let expired = record(time::Duration::seconds(-1));
        let live = record(time::Duration::minutes(5));
        assert!(memory.create(&expired, None));
        assert!(memory.create(&live, None));
        assert_eq!(memory.delete_expired(OffsetDateTime::now_utc()), (1, 0));
        assert_eq!(memory.maps().sessions.len(), 1);
        assert!(memory.load(&live.id, OffsetDateTime::now_utc()).is_some());
    }

    #[test]
    fn a_write_lands_only_on_the_revision_it_read_and_never_recreates() {
        let memory = Memory::default();
        let session = record(time::Duration::minutes(5));
        assert!(memory.create(&session, None));
        let read = memory.load(&session.id, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(
            memory.write(&read, 0, None, OffsetDateTime::now_utc()),
            Written::Yes
        );
        assert_eq!(
            memory.write(&read, 0, None, OffsetDateTime::now_utc()),
            Written::Conflict,
            "stale copy"
        );
        memory.delete(&session.id);
        assert_eq!(
            memory.write(&read, 1, None, OffsetDateTime::now_utc()),
            Written::Gone
        );
        assert!(
            memory
                .load(&session.id, OffsetDateTime::now_utc())
                .is_none(),
            "not recreated"
        );
    }
}
