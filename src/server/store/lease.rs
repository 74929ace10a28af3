//! How long an instance on Redis may serve the sessions it keeps
//! (`cache.rs`) without asking Redis whether they changed.
//!
//! Every write and delete publishes the session id on a channel every
//! instance subscribes to; an instance forgets what it hears. Hearing alone
//! is not enough (a message can still be on its way when the writer's
//! response returns, and a dropped connection loses messages), so:
//!
//! - **the lease.** An instance pings Redis on its subscription connection.
//!   Redis answers in order, so when the answer to a ping comes back,
//!   everything published before Redis handled that ping has arrived ahead
//!   of it; the instance handles those messages, then trusts its copies
//!   until [`LEASE`] after it *sent* the ping. With no answer (a dead
//!   connection, a stalled process) the lease runs out and every read asks
//!   Redis for the revision again, as it does without a lease;
//! - **the roll call.** Before each ping, the instance writes its name in
//!   `gatehouse:instances` with an expiry of twice the lease, by Redis'
//!   clock: any instance that might hold a lease is on that list;
//! - **the acknowledgement.** The writer's script reads the list in the same
//!   step as the write. Each instance acknowledges the message once it has
//!   forgotten the session; the writer's response waits for every listed
//!   instance to acknowledge, or for its entry to expire (then its lease has
//!   run out too). A sign-out or a token refresh is thus in effect on every
//!   instance before its response returns, usually after a millisecond;
//!   an instance that died costs writers at most `2 × LEASE` until its entry
//!   expires.
//!
//! The lease is taken only while reads want it: an idle instance sends no
//! pings (open `/auth/events` streams do not read the store).

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// How long after sending a ping an instance trusts its copies.
pub(super) const LEASE: Duration = Duration::from_millis(100);

/// How often a wanted lease is renewed (several pings per lease, so a busy
/// instance never sees it run out).
pub(super) const RENEW_EVERY: Duration = Duration::from_millis(20);

/// How long an instance's entry in the roll call lasts after it was written
/// (longer than the lease it covers; see [`Lease::extend`]).
pub(super) const LISTED_FOR: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(super) struct Lease {
    origin: Instant,
    /// Nanoseconds after `origin` until which copies may be served; 0: not.
    until: AtomicU64,
    /// A read asked for the lease since the last renewal.
    wanted: AtomicBool,
    /// Wakes the renewer when a read wants the lease again.
    pub(super) wake: Notify,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            until: AtomicU64::new(0),
            wanted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }
}

impl Lease {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Whether kept copies may be served now. Also asks for the lease to be
    /// kept (or taken) for the reads to come.
    pub(super) fn held(&self) -> bool {
        if !self.wanted.load(Ordering::Relaxed) {
            self.wanted.store(true, Ordering::Relaxed);
            self.wake.notify_one();
        }
        self.nanos(Instant::now()) < self.until.load(Ordering::Acquire)
    }

    /// Whether a read asked for the lease since the last call.
    pub(super) fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    /// Redis answered a ping sent at `pinged`, after this instance put its
    /// name on the roll call at `listed` (both before the ping was sent) and
    /// handled every message that came before the answer. The entry lasts
    /// [`LISTED_FOR`] from a moment after `listed`; the lease ends before it
    /// does, so a writer that finds no entry knows no lease is left.
    pub(super) fn extend(&self, listed: Instant, pinged: Instant) {
        let until = (pinged + LEASE).min(listed + LISTED_FOR - RENEW_EVERY);
        self.until.store(self.nanos(until), Ordering::Release);
    }

    /// The connection is gone (or messages were lost): serve nothing kept
    /// until a new ping is answered.
    pub(super) fn revoke(&self) {
        self.until.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lasts_from_the_ping_and_never_outlives_the_roll_call() {
        let lease = Lease::default();
        assert!(!lease.held(), "no lease before a ping is answered");
        assert!(lease.take_wanted(), "the read asked for one");
        assert!(!lease.take_wanted());

        let now = Instant::now();
        lease.extend(now, now);
        assert!(lease.held());
        lease.revoke();
        assert!(!lease.held());

        // Sent long ago: already over.
        let then = now - LEASE;
        lease.extend(then, then);
        assert!(!lease.held());
        // Pinged just now, but listed so long ago that the entry is about
        // to expire: the lease ends with it.
        lease.extend(now - (LISTED_FOR - RENEW_EVERY), now);
        assert!(!lease.held());
    }
}
