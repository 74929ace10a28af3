//! What an instance on Redis hears and answers on its subscription
//! connection: sessions written or ended by any instance (forgotten from the
//! cache, `/auth/events` streams woken), acknowledgements of its own writes,
//! and the pings that keep its lease (the protocol is in `lease.rs`).
//!
//! The connection is this module's own, without fred's automatic reconnect:
//! after any break a new one is made, subscribed, and everything kept is
//! forgotten before a lease is taken again, since what was published in
//! between is lost.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use fred::{
    clients::SubscriberClient,
    prelude::{
        Builder, ClientLike, Config as RedisConfig, EventInterface, LuaInterface,
        Pool as RedisPool, PubsubInterface,
    },
    types::{Message, Value},
};
use tokio::sync::{broadcast, mpsc, watch};
use tower_sessions::session::Id;

use super::{
    cache::Cache,
    ended::Watchers,
    lease::{Lease, LEASE, LISTED_FOR, RENEW_EVERY},
};

/// Where a deleted session's id is published.
pub(super) const ENDED_CHANNEL: &str = "gatehouse:ended";
/// Where a rewritten session's id is published.
pub(super) const WRITTEN_CHANNEL: &str = "gatehouse:written";
/// The roll call: every instance that may hold a lease, scored by when its
/// entry expires (milliseconds, Redis' clock).
pub(super) const INSTANCES: &str = "gatehouse:instances";

/// Where instance `name` hears acknowledgements of its writes.
fn ack_channel(name: &str) -> String {
    format!("gatehouse:ack:{name}")
}

/// KEYS: the roll call. ARGV: name, milliseconds to stay listed.
const LIST: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// What the store and its listener share.
#[derive(Debug)]
pub(super) struct Shared {
    /// This instance's name in the roll call and in its messages.
    pub(super) name: String,
    pub(super) cache: Cache,
    pub(super) lease: Lease,
    pub(super) acks: Acks,
    pub(super) watchers: Arc<Watchers>,
}

/// The writes of this instance that wait for acknowledgements, by nonce.
#[derive(Debug, Default)]
pub(super) struct Acks {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::UnboundedSender<String>>>,
}

/// Acknowledgements of one write, as they come (instance names).
pub(super) struct Expecting<'a> {
    acks: &'a Acks,
    pub(super) nonce: u64,
    heard: mpsc::UnboundedReceiver<String>,
}

impl Acks {
    /// Starts collecting the acknowledgements of a write about to be made
    /// (they may come back before the write's own answer).
    pub(super) fn expect(&self) -> Expecting<'_> {
        let nonce = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, heard) = mpsc::unbounded_channel();
        self.waiting().insert(nonce, tx);
        Expecting {
            acks: self,
            nonce,
            heard,
        }
    }

    fn heard(&self, nonce: u64, from: &str) {
        if let Some(tx) = self.waiting().get(&nonce) {
            let _ = tx.send(from.to_string());
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::UnboundedSender<String>>> {
        self.waiting.lock().expect("acknowledgements poisoned")
    }
}

impl Drop for Expecting<'_> {
    fn drop(&mut self) {
        self.acks.waiting().remove(&self.nonce);
    }
}

impl Expecting<'_> {
    /// Returns once every instance of `listed` (name, milliseconds its entry
    /// had left when the write was made) other than `me` acknowledged, or
    /// its entry expired: then no instance serves a copy older than the
    /// write.
    pub(super) async fn all_heard(mut self, me: &str, listed: Vec<(String, u64)>) {
        let start = tokio::time::Instant::now();
        let mut waiting: HashMap<String, tokio::time::Instant> = listed
            .into_iter()
            .filter(|(name, _)| name != me)
            .map(|(name, left)| (name, start + Duration::from_millis(left)))
            .collect();
        loop {
            let now = tokio::time::Instant::now();
            waiting.retain(|_, until| *until > now);
            let Some(next) = waiting.values().min().copied() else {
                return;
            };
            match tokio::time::timeout_at(next, self.heard.recv()).await {
                Ok(Some(from)) => {
                    waiting.remove(&from);
                }
                Ok(None) => {
                    // Cannot happen (the sender lives until this is
                    // dropped); if it did, wait out every entry.
                    let last = waiting.values().max().copied().unwrap_or(now);
                    tokio::time::sleep_until(last).await;
                    return;
                }
                Err(_) => {} // `next` expired: dropped on the next turn
            }
        }
    }
}

/// A subscription connection, subscribed.
struct Connection {
    client: SubscriberClient,
    messages: broadcast::Receiver<Message>,
    closed: fred::types::ConnectHandle,
}

impl Connection {
    async fn open(config: &RedisConfig, name: &str) -> Result<Self, fred::error::Error> {
        let client = Builder::from_config(config.clone())
            .with_performance_config(|p| p.broadcast_channel_capacity = 4096)
            .build_subscriber_client()?;
        let closed = client.init().await?;
        let messages = client.message_rx();
        client
            .subscribe(vec![
                ENDED_CHANNEL.to_string(),
                WRITTEN_CHANNEL.to_string(),
                ack_channel(name),
            ])
            .await?;
        Ok(Self {
            client,
            messages,
            closed,
        })
    }
}

/// Subscribes (failing if Redis cannot be reached now), then keeps
/// listening in the background, on new connections after any break, until
/// `stop`'s sender is dropped with the store.
pub(super) async fn listen(
    config: RedisConfig,
    pool: RedisPool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<()>,
) -> Result<(), fred::error::Error> {
    let first = Connection::open(&config, &shared.name).await?;
    tokio::spawn(async move {
        let mut connection = Some(first);
        let mut pause = Duration::from_millis(100);
        loop {
            if let Some(mut connection) = connection.take() {
                tokio::select! {
                    _ = serve(&mut connection, &shared, &pool) => {}
                    _ = stop.changed() => {}
                }
                shared.lease.revoke();
                let _ = connection.client.quit().await;
                pause = Duration::from_millis(100);
            }
            if stop.has_changed().is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
            match Connection::open(&config, &shared.name).await {
                Ok(opened) => {
                    // Whatever was published while no connection listened
                    // is lost: nothing kept from before is served again,
                    // and every stream checks its session once.
                    shared.cache.forget_all();
                    shared.watchers.recheck_all();
                    connection = Some(opened);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Redis subscription lost; retrying");
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    Ok(())
}

/// Handles messages and keeps the lease while reads want it; returns when
/// the connection breaks.
async fn serve(connection: &mut Connection, shared: &Shared, pool: &RedisPool) {
    let Connection {
        client,
        messages,
        closed,
    } = connection;
    let mut next_renewal = tokio::time::Instant::now();
    let mut wanted = false;
    loop {
        if closed.is_finished() {
            return;
        }
        wanted |= shared.lease.take_wanted();
        tokio::select! {
            message = messages.recv() => {
                if !handle(message.map_err(Missed::from), shared, pool) {
                    return;
                }
                continue;
            }
            _ = shared.lease.wake.notified(), if !wanted => continue,
            // A dead connection is noticed within a second even when idle.
            _ = tokio::time::sleep(Duration::from_secs(1)), if !wanted => continue,
            _ = tokio::time::sleep_until(next_renewal), if wanted => {}
        }
        wanted = false;
        let listed = Instant::now();
        let on_roll: Result<i64, _> = pool
            .eval(
                LIST,
                vec![INSTANCES],
                vec![
                    shared.name.clone(),
                    (LISTED_FOR.as_millis() as u64).to_string(),
                ],
            )
            .await;
        if let Err(e) = on_roll {
            tracing::warn!(error = %e, "could not renew this instance's session lease");
            shared.lease.revoke();
            next_renewal = tokio::time::Instant::now() + RENEW_EVERY;
            continue;
        }
        let pinged = Instant::now();
        let answered = tokio::time::timeout(LEASE, client.ping::<Value>(None)).await;
        if !matches!(answered, Ok(Ok(_))) {
            return;
        }
        // Everything published before Redis answered came before the answer.
        loop {
            match messages.try_recv() {
                Err(broadcast::error::TryRecvError::Empty) => break,
                message => {
                    if !handle(message.map_err(Missed::from), shared, pool) {
                        return;
                    }
                }
            }
        }
        shared.lease.extend(listed, pinged);
        next_renewal = tokio::time::Instant::from_std(pinged) + RENEW_EVERY;
    }
}

/// Why no message came: some were lost, or the connection is gone.
enum Missed {
    Lagged,
    Closed,
}

impl From<broadcast::error::RecvError> for Missed {
    fn from(e: broadcast::error::RecvError) -> Self {
        match e {
            broadcast::error::RecvError::Lagged(_) => Missed::Lagged,
            broadcast::error::RecvError::Closed => Missed::Closed,
        }
    }
}

impl From<broadcast::error::TryRecvError> for Missed {
    fn from(e: broadcast::error::TryRecvError) -> Self {
        match e {
            broadcast::error::TryRecvError::Lagged(_) => Missed::Lagged,
            // `Empty` is handled by the caller.
            _ => Missed::Closed,
        }
    }
}

/// Handles one message; `false` when the connection is gone.
fn handle(message: Result<Message, Missed>, shared: &Shared, pool: &RedisPool) -> bool {
    let message = match message {
        Ok(message) => message,
        Err(Missed::Lagged) => {
            // Messages were lost: forget everything, recheck every stream.
            shared.cache.forget_all();
            shared.watchers.recheck_all();
            return true;
        }
        Err(Missed::Closed) => return false,
    };
    let Some(text) = message.value.as_str() else {
        return true;
    };
    let mut words = text.split(' ');
    if *message.channel == *ENDED_CHANNEL || *message.channel == *WRITTEN_CHANNEL {
        let Some(id) = words.next().and_then(|w| w.parse::<Id>().ok()) else {
            return true;
        };
        shared.cache.forget(&id);
        if *message.channel == *ENDED_CHANNEL {
            shared.watchers.ended(&id);
        }
        // "<id> <writer> <nonce>": the writer waits for this answer.
        if let (Some(writer), Some(nonce)) = (words.next(), words.next()) {
            if writer != shared.name {
                let (client, channel) = (pool.next().clone(), ack_channel(writer));
                let ack = format!("{nonce} {}", shared.name);
                tokio::spawn(async move {
                    let sent: Result<i64, _> = client.publish(channel, ack).await;
                    if let Err(e) = sent {
                        tracing::warn!(error = %e, "could not acknowledge a session change");
                    }
                });
            }
        }
    } else if let (Some(nonce), Some(from)) = (
        words.next().and_then(|n| n.parse::<u64>().ok()),
        words.next(),
    ) {
        shared.acks.heard(nonce, from);
    }
    true
}
