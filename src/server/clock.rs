//! The clock behind every expiry decision: access tokens and when to refresh
//! them, ID tokens and other JWTs from the IdP, pending logins, the idle and
//! absolute session lifetimes, and the session store's own expiry. One clock,
//! so these decisions agree with each other.
//!
//! In production it is the system clock. Tests use an adjustable one and move
//! it forward instead of sleeping until a token or a session has expired
//! (tokio's paused time cannot do this: the IdP runs in real time).

use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

use time::{Duration, OffsetDateTime};

#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// How far ahead of the system clock, in milliseconds (`None`: the
    /// system clock, which no one can move).
    ahead_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that starts at the system time and that [`Clock::advance`]
    /// moves forward: for tests.
    pub fn adjustable() -> Self {
        Self {
            ahead_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves an adjustable clock forward: from now on it reads `by` later
    /// than before (and keeps running with the system clock). Panics on the
    /// system clock, which must never be moved.
    pub fn advance(&self, by: std::time::Duration) {
        let ahead = self
            .ahead_ms
            .as_ref()
            .expect("only an adjustable clock can be moved");
        let ms = i64::try_from(by.as_millis()).expect("a reasonable step");
        ahead.fetch_add(ms, Ordering::SeqCst);
    }

    /// How far this clock is ahead of the system clock (zero for the system clock).
    pub fn ahead(&self) -> Duration {
        match &self.ahead_ms {
            None => Duration::ZERO,
            Some(ms) => Duration::milliseconds(ms.load(Ordering::SeqCst)),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        match &self.ahead_ms {
            None => OffsetDateTime::now_utc(),
            Some(_) => OffsetDateTime::now_utc() + self.ahead(),
        }
    }

    /// [`Clock::now`] in Unix seconds.
    pub fn unix_now(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// [`Clock::now`] for `openidconnect`'s ID token verifier, which reads chrono.
    pub fn chrono_now(&self) -> chrono::DateTime<chrono::Utc> {
        let now = self.now();
        chrono::DateTime::from_timestamp(now.unix_timestamp(), now.nanosecond())
            .expect("the current time is representable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_the_system_time() {
        let clock = Clock::system();
        let before = OffsetDateTime::now_utc();
        let now = clock.now();
        assert!(before <= now && now <= OffsetDateTime::now_utc());
        assert_eq!(clock.ahead(), Duration::ZERO);
    }

    #[test]
    fn an_adjustable_clock_moves_forward_for_every_copy() {
        let clock = Clock::adjustable();
        let copy = clock.clone();
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(copy.ahead(), Duration::seconds(90));
        let now = copy.now();
        assert!(now >= OffsetDateTime::now_utc() + Duration::seconds(89));
        let chrono = copy.chrono_now();
        assert_eq!(chrono.timestamp(), now.unix_timestamp());
    }

    #[test]
    #[should_panic(expected = "only an adjustable clock can be moved")]
    fn the_system_clock_cannot_be_moved() {
        Clock::system().advance(std::time::Duration::from_secs(1));
    }
}
