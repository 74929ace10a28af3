//! Records already decoded, so a signed-in request does not parse its 5 KiB
//! record again: the session data holds the record as one JSON string
//! (`record.rs`) that starts with a tag made fresh for each encoding, and
//! the decoded record is kept beside that tag. A request's string with the
//! kept tag is the kept encoding and gets the kept record; any other string
//! is decoded. What is served is therefore always what the request's own
//! copy of the session says (a pure function of its bytes): this cache
//! cannot be stale, whatever the store does. (Only `encode_record` writes
//! these strings, with 122 random bits per tag; the store is ours, not the
//! browser's: the cookie carries only the session id.) A string stored
//! before tags is compared whole.
//!
//! The user view and its JSON (`GET /auth/user`, the `current_user` server
//! function) are kept with the record too, for the idle deadline they were
//! made with: they are a function of the two.

use std::{sync::Arc, sync::Mutex};

use time::OffsetDateTime;
use tower_sessions::session::Id;

use super::record::{split_tag, SessionRecord};
use crate::{
    server::store::{insert_bounded, IdMap},
    types::{SignedInUser, UserView},
};

/// At most this many sessions are kept (a string and its decoded record,
/// roughly 12 KiB each, so about 50 MiB); past it, an arbitrary one makes
/// room. An entry of an ended session is never served (no request carries
/// its bytes any more) and goes when room is made.
const CAPACITY: usize = 4_096;

#[derive(Debug, Default)]
pub struct DecodedRecords(Mutex<IdMap<Kept>>);

#[derive(Debug)]
struct Kept {
    /// The tag of the encoding `record` was decoded from (or, for a record
    /// stored before tags, the whole encoding): a tag is never written twice.
    same: String,
    record: Arc<SessionRecord>,
    /// The user (view and JSON) for `record` at an idle deadline.
    view: Option<(OffsetDateTime, SignedInUser)>,
}

impl DecodedRecords {
    /// The record the JSON string `encoded` (session `id`'s) decodes to;
    /// `None` when it is not a record.
    pub fn decode(&self, id: Id, encoded: &str) -> Option<Arc<SessionRecord>> {
        let (tag, json) = split_tag(encoded);
        let same = tag.unwrap_or(encoded);
        if let Some(kept) = self.kept().get(&id) {
            if kept.same == same {
                return Some(kept.record.clone());
            }
        }
        let record = Arc::new(serde_json::from_str::<SessionRecord>(json).ok()?);
        let mut kept = self.kept();
        insert_bounded(
            &mut kept,
            CAPACITY,
            id,
            Kept {
                same: same.to_string(),
                record: record.clone(),
                view: None,
            },
        );
        Some(record)
    }

    /// The signed-in user for `record` (as [`Self::decode`] gave it for
    /// session `id`) at idle deadline `deadline`, with its JSON: `make`
    /// makes the view, and its JSON is made, once per record and deadline.
    pub fn user(
        &self,
        id: Id,
        record: &Arc<SessionRecord>,
        deadline: OffsetDateTime,
        make: impl FnOnce() -> UserView,
    ) -> SignedInUser {
        let same = |kept: &Kept| Arc::ptr_eq(&kept.record, record);
        if let Some(Kept {
            view: Some((at, user)),
            ..
        }) = self.kept().get(&id).filter(|k| same(k))
        {
            if *at == deadline {
                return user.clone();
            }
        }
        let user = SignedInUser::with_json(make());
        if let Some(kept) = self.kept().get_mut(&id).filter(|k| same(k)) {
            kept.view = Some((deadline, user.clone()));
        }
        user
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, IdMap<Kept>> {
        self.0.lock().expect("decoded-record cache poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        auth::session::record::{encode_record, sample_record},
        types::sample_view,
    };

    /// The same session id with other bytes (new tokens, a removed role) is
    /// decoded again, never answered from what was kept.
    #[test]
    fn only_the_same_bytes_get_the_kept_record() {
        let cache = DecodedRecords::default();
        let id = Id::default();
        let first = encode_record(&sample_record());
        let a = cache.decode(id, first.as_str().unwrap()).unwrap();
        let again = cache.decode(id, first.as_str().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "kept");

        let mut changed = sample_record();
        changed.roles.clear();
        let changed = encode_record(&changed);
        let b = cache.decode(id, changed.as_str().unwrap()).unwrap();
        assert!(b.roles.is_empty(), "decoded from the new bytes");
        assert!(cache.decode(id, "not a record").is_none());
        let untagged = serde_json::to_string(&sample_record()).unwrap();
        let c = cache.decode(id, &untagged).unwrap();
        assert!(
            Arc::ptr_eq(&c, &cache.decode(id, &untagged).unwrap()),
            "kept whole"
        );
        let mut changed = sample_record();
        changed.sid = None;
        let changed = serde_json::to_string(&changed).unwrap();
        assert!(
            cache.decode(id, &changed).unwrap().sid.is_none(),
            "compared whole"
        );
        assert_eq!(
            cache.decode(id, first.as_str().unwrap()).unwrap().roles,
            vec!["user".to_string()]
        );
    }

    /// The view's JSON is made once per record and idle deadline; another
    /// deadline, or a record decoded from other bytes, makes it again.
    #[test]
    fn the_view_is_made_once_per_record_and_deadline() {
        let cache = DecodedRecords::default();
        let id = Id::default();
        let encoded = encode_record(&sample_record());
        let record = cache.decode(id, encoded.as_str().unwrap()).unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let made = std::cell::Cell::new(0);
        let make = |name: &'static str| {
            made.set(made.get() + 1);
            let mut view = sample_view();
            view.name = name.into();
            view
        };
        let name = |user: SignedInUser| {
            let json: serde_json::Value = serde_json::from_str(user.json().unwrap().get()).unwrap();
            assert_eq!(json["name"], user.name, "the JSON is the view's");
            user.name.clone()
        };
        assert_eq!(name(cache.user(id, &record, at, || make("one"))), "one");
        assert_eq!(name(cache.user(id, &record, at, || make("two"))), "one");
        assert_eq!(made.get(), 1);
        let later = at + time::Duration::minutes(1);
        assert_eq!(
            name(cache.user(id, &record, later, || make("three"))),
            "three"
        );
        let mut changed = sample_record();
        changed.roles.clear();
        let changed = encode_record(&changed);
        let other = cache.decode(id, changed.as_str().unwrap()).unwrap();
        assert_eq!(name(cache.user(id, &other, later, || make("four"))), "four");
        assert_eq!(made.get(), 3);
    }
}
