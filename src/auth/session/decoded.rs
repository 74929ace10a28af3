//! Records already decoded, so a signed-in request does not parse its 5 KiB
//! record again: the session data holds the record as one JSON string
//! (`record.rs`), and the decoded record is kept beside a copy of that
//! string. A request's string that is byte for byte the kept one gets the
//! kept record; any other string is decoded. What is served is therefore
//! always what the request's own copy of the session says (a pure function
//! of its bytes): this cache cannot be stale, whatever the store does.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use tower_sessions::session::Id;

use super::record::SessionRecord;

/// At most this many sessions are kept (a string and its decoded record,
/// roughly 12 KiB each, so about 50 MiB); past it, an arbitrary one makes
/// room. An entry of an ended session is never served (no request carries
/// its bytes any more) and goes when room is made.
const CAPACITY: usize = 4_096;

#[derive(Debug, Default)]
pub struct DecodedRecords(Mutex<HashMap<Id, (String, Arc<SessionRecord>)>>);

impl DecodedRecords {
    /// The record the JSON string `encoded` (session `id`'s) decodes to;
    /// `None` when it is not a record.
    pub fn decode(&self, id: Id, encoded: &str) -> Option<Arc<SessionRecord>> {
        if let Some((kept, record)) = self.kept().get(&id) {
            if kept == encoded {
                return Some(record.clone());
            }
        }
        let record = Arc::new(serde_json::from_str::<SessionRecord>(encoded).ok()?);
        let mut kept = self.kept();
        if kept.len() >= CAPACITY && !kept.contains_key(&id) {
            if let Some(any) = kept.keys().next().copied() {
                kept.remove(&any);
            }
        }
        kept.insert(id, (encoded.to_string(), record.clone()));
        Some(record)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<Id, (String, Arc<SessionRecord>)>> {
        self.0.lock().expect("decoded-record cache poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::record::encode_record;

    fn record(name: &str) -> SessionRecord {
        serde_json::from_value(serde_json::json!({
            "sub": "alice", "sid": "s1", "name": name, "preferred_username": null,
            "email": null, "email_verified": null, "picture": null, "roles": ["admin"],
            "id_token_claims": {}, "created_at": 1_700_000_000,
            "absolute_expires_at": 1_700_043_200,
            "tokens": {
                "access_token": "at", "refresh_token": "rt", "id_token": "it",
                "access_token_expires_at": 1_700_000_300,
            },
        }))
        .unwrap()
    }

    /// The same session id with other bytes (new tokens, a removed role) is
    /// decoded again, never answered from what was kept.
    #[test]
    fn only_the_same_bytes_get_the_kept_record() {
        let cache = DecodedRecords::default();
        let id = Id::default();
        let first = encode_record(&record("Alice"));
        let a = cache.decode(id, first.as_str().unwrap()).unwrap();
        let again = cache.decode(id, first.as_str().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "kept");

        let mut changed = record("Alice");
        changed.roles.clear();
        let changed = encode_record(&changed);
        let b = cache.decode(id, changed.as_str().unwrap()).unwrap();
        assert!(b.roles.is_empty(), "decoded from the new bytes");
        assert!(cache.decode(id, "not a record").is_none());
        assert_eq!(
            cache.decode(id, first.as_str().unwrap()).unwrap().roles,
            vec!["admin".to_string()]
        );
    }
}
