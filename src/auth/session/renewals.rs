//! One idle renewal of a session at a time in this process. A session's
//! requests all read the same cached copy until its renewal is stored, so
//! without a claim every request that arrives in between renews too: a
//! compare-and-set write each (on SQLite a commit), of which only the first
//! lands. When 1,000 sessions come back from a minute's idleness at once
//! (`make bench`'s "spread over 1,000 sessions" row) that was thousands of
//! writes in the first second instead of one per session.

use std::sync::Mutex;

use time::{Duration, OffsetDateTime};
use tower_sessions::session::Id;

use crate::server::store::{insert_bounded, IdMap};

/// Claims kept at most (a claim is 40 bytes; one evicted early only lets a
/// second request renew the same session, which the store's compare-and-set
/// makes harmless).
const CAPACITY: usize = 10_000;

/// How long a claim holds at most: long enough for its write to land and
/// be read back, short enough that a renewal whose request failed (a 5xx
/// is not saved) is retried by the session's next requests.
const HOLD: Duration = Duration::seconds(1);

#[derive(Debug, Default)]
pub struct Renewals(Mutex<IdMap<OffsetDateTime>>);

impl Renewals {
    /// Whether this request renews session `id` at `now`: not when another
    /// claimed it less than `hold` (at most [`HOLD`]) before.
    pub fn claim(&self, id: Id, now: OffsetDateTime, hold: Duration) -> bool {
        let hold = hold.min(HOLD);
        let mut claims = self.0.lock().expect("renewal claims poisoned");
        if claims
            .get(&id)
            .is_some_and(|at| now - *at < hold && now >= *at)
        {
            return false;
        }
        insert_bounded(&mut claims, CAPACITY, id, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_renewed_by_one_request_until_the_claim_lapses() {
        let renewals = Renewals::default();
        let (a, b) = (Id(1), Id(2));
        let now = OffsetDateTime::from_unix_timestamp(1_796_419_414).unwrap();
        let hold = Duration::seconds(6);
        assert!(renewals.claim(a, now, hold));
        // The same session, while the first claim holds: no.
        assert!(!renewals.claim(a, now + Duration::milliseconds(999), hold));
        // Another session: yes.
        assert!(renewals.claim(b, now, hold));
        // A claim holds at most a second, or `hold` if shorter.
        assert!(renewals.claim(a, now + Duration::seconds(1), hold));
        assert!(renewals.claim(
            b,
            now + Duration::milliseconds(200),
            Duration::milliseconds(200)
        ));
        // A clock that went back does not hold a session's renewal off.
        assert!(renewals.claim(a, now, hold));
    }
}
