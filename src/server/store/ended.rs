//! Who waits for which session to end. An `/auth/events` stream registers
//! here and sleeps; the store wakes it when the session is deleted (sign-out
//! in another tab, back-channel logout, revocation, a refused refresh, a
//! rotated id), so an idle tab costs no store read and no timer tick.
//!
//! Across instances the delete publishes the id (Redis: the delete script;
//! Postgres: `NOTIFY`) and every instance's listener calls
//! [`Watchers::ended`]; when that listener reconnects, messages may have been lost, so every watcher is asked to
//! re-check the store once ([`Watchers::recheck_all`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;
use tower_sessions::session::Id;

/// The sessions being watched on this instance. The value a watcher sees
/// counts "re-check" requests; the channel closing means "ended".
#[derive(Debug, Default)]
pub struct Watchers {
    by_session: Mutex<HashMap<Id, watch::Sender<u64>>>,
}

/// What woke a watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The session was deleted.
    Ended,
    /// Notifications may have been lost: read the store once to be sure.
    Recheck,
}

/// One watcher of one session; unregisters itself when dropped.
pub struct EndWatch {
    id: Id,
    changes: watch::Receiver<u64>,
    watchers: Arc<Watchers>,
}

impl Watchers {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Id, watch::Sender<u64>>> {
        self.by_session.lock().expect("session watchers poisoned")
    }

    /// Starts watching `id`. Register before reading the session from the
    /// store: an end that lands between the two is then not missed.
    pub fn watch(self: &Arc<Self>, id: Id) -> EndWatch {
        let changes = self
            .sessions()
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        EndWatch {
            id,
            changes,
            watchers: self.clone(),
        }
    }

    /// Session `id` was deleted: wakes its watchers with [`Wake::Ended`].
    pub fn ended(&self, id: &Id) {
        // Dropping the sender closes the channel for every receiver.
        self.sessions().remove(id);
    }

    /// Wakes every watcher with [`Wake::Recheck`].
    pub fn recheck_all(&self) {
        for sender in self.sessions().values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many sessions are watched (for tests and the bench).
    pub fn watched(&self) -> usize {
        self.sessions().len()
    }
}

impl EndWatch {
    /// Waits until the session ends or a re-check is asked for.
    pub async fn wake(&mut self) -> Wake {
        match self.changes.changed().await {
            Ok(()) => Wake::Recheck,
            Err(_) => Wake::Ended,
        }
    }
}

impl Drop for EndWatch {
    fn drop(&mut self) {
        let mut sessions = self.watchers.sessions();
        // The last watcher of a session takes its entry with it (this one's
        // receiver is still counted while it is being dropped).
        if sessions.get(&self.id).is_some_and(|sender| {
            sender.receiver_count() <= 1 && self.changes.same_channel(&sender.subscribe())
        }) {
            sessions.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woken(watch: &mut EndWatch) -> Option<Wake> {
        tokio::time::timeout(Duration::from_millis(200), watch.wake())
            .await
            .ok()
    }

    #[tokio::test]
    async fn an_end_wakes_every_watcher_of_that_session_only() {
        let watchers = Arc::new(Watchers::default());
        let (a, b) = (Id::default(), Id::default());
        let (mut a1, mut a2, mut b1) = (watchers.watch(a), watchers.watch(a), watchers.watch(b));
        watchers.ended(&a);
        assert_eq!(woken(&mut a1).await, Some(Wake::Ended));
        assert_eq!(woken(&mut a2).await, Some(Wake::Ended));
        assert_eq!(
            woken(&mut b1).await,
            None,
            "another session's watcher sleeps on"
        );
    }

    #[tokio::test]
    async fn a_recheck_wakes_everyone_without_ending_anything() {
        let watchers = Arc::new(Watchers::default());
        let mut a = watchers.watch(Id::default());
        watchers.recheck_all();
        assert_eq!(woken(&mut a).await, Some(Wake::Recheck));
        assert_eq!(woken(&mut a).await, None, "one wake per re-check");
    }

    #[tokio::test]
    async fn the_last_watcher_to_leave_unregisters_its_session() {
        let watchers = Arc::new(Watchers::default());
        let id = Id::default();
        let first = watchers.watch(id);
        let second = watchers.watch(id);
        drop(first);
        assert_eq!(watchers.watched(), 1);
        drop(second);
        assert_eq!(watchers.watched(), 0);
        // A watcher that outlived its session's end does not remove a newer entry.
        let mut old = watchers.watch(id);
        watchers.ended(&id);
        let _new = watchers.watch(id);
        assert_eq!(woken(&mut old).await, Some(Wake::Ended));
        drop(old);
        assert_eq!(watchers.watched(), 1);
    }
}
