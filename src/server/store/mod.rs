//! The session store chosen by `SESSION_STORE` (memory, SQLite, Redis,
//! Postgres) behind
//! one type, plus what several requests or several instances must agree on:
//! - **compare-and-set writes.** Every stored session carries a revision.
//!   A write names the revision it read and lands only if the session still
//!   exists at that revision; tower-sessions' end-of-response save goes
//!   through the same check. So an ended session is never written back by a
//!   request that was in flight when it ended, and a request that read the
//!   session before a token refresh can never put the older tokens back
//!   (see the README's Security section, "Sessions end when they are ended");
//! - an index of signed-in sessions by `sub` and `sid`, updated in the same
//!   step as the record, so back-channel logout and session lists find a
//!   user's sessions without scanning;
//! - a per-session lock for token refresh (in-process always, and across
//!   instances with Redis or Postgres);
//! - the replay cache (`jti`s seen), shared through Redis or Postgres;
//! - who waits for which session to end (`ended`): deleting a session wakes
//!   its `/auth/events` streams, on every instance with Redis or Postgres.

mod cache;
mod ended;
mod lease;
mod listener;
mod lock;
mod memory;
mod postgres;
mod redis;
mod renewer;
mod sealed;
mod sqlite;

pub use sealed::{AtRest, Listing, Sealer};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use fred::{prelude::KeysInterface, types::Expiration};
use serde_json::Value;
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store, SessionStore,
};

pub use ended::{EndWatch, Wake};
pub use lock::SessionLock;

use super::{
    clock::Clock,
    config::StoreUrl,
    telemetry::{metrics, traces},
};

/// Where a stored session's revision sits in its data (the request's copy
/// carries the revision it read, which its save names as the base).
pub const REV_KEY: &str = "gatehouse.rev";

/// A map keyed by session id, for the maps every signed-in request looks
/// into (stored sessions, cached copies, decoded records). foldhash is
/// seeded per process like std's SipHash, so keys still cannot be chosen to
/// collide, and hashes a 128-bit id in a fraction of the time.
pub type IdMap<V> = HashMap<Id, V, foldhash::fast::RandomState>;

/// Inserts into a map kept to at most `capacity` entries: a new key when
/// it is full evicts any one entry (each of these maps only remembers what
/// can be read or derived again, so any entry can go).
pub fn insert_bounded<V>(map: &mut IdMap<V>, capacity: usize, key: Id, value: V) {
    if map.len() >= capacity && !map.contains_key(&key) {
        if let Some(any) = map.keys().next().copied() {
            map.remove(&any);
        }
    }
    map.insert(key, value);
}

/// Which sessions to find: those of one IdP session, or of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Sid(String),
    Sub(String),
}

/// What a signed-in session is indexed by, and what it is listed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerEntry {
    pub sub: String,
    pub sid: Option<String>,
    /// What a list of the owner's sessions shows of this one (no token:
    /// with `SESSION_KEY_IN_COOKIE` it is all the server can read of a
    /// session whose browser is not asking).
    pub facts: Value,
}

/// A live session of an owner, as far as the store can read it without the
/// session's cookie.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The key the store files it under (not its cookie id).
    pub key: Id,
    pub expiry_date: OffsetDateTime,
    /// [`OwnerEntry::facts`].
    pub facts: Value,
    /// The whole record, unless it is sealed with the session's own key.
    pub record: Option<Record>,
}

/// The `sub` and `sid` index columns of a session's owner (SQLite and
/// Postgres rows).
fn owner_columns(owner: &Option<OwnerEntry>) -> (Option<&str>, Option<&str>) {
    match owner {
        Some(OwnerEntry { sub, sid, .. }) => (Some(sub), sid.as_deref()),
        None => (None, None),
    }
}

/// Reads a session's owner from its data (`None`: not signed in). Given by
/// the auth core, which alone knows the record inside the data.
pub type Indexer = fn(&HashMap<String, Value>) -> Option<OwnerEntry>;

/// What a read-modify-write decided: write the changed copy, or leave the
/// stored session as it is. Either way, with what to return.
pub enum Change<T> {
    Write(T),
    Keep(T),
}

/// The outcome of a compare-and-set write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Another write landed since the revision this one read.
    Conflict,
    /// The session no longer exists (ended, or expired): it stays ended.
    Gone,
}

/// The session data's idle stamp (written by the auth core's keep-alive):
/// a write that changes nothing else is a renewal, which SQLite commits
/// without waiting for the disk (`sqlite.rs`).
pub const IDLE_STAMP_KEY: &str = "gatehouse.active_at";

fn rev_of(record: &Record) -> u64 {
    record
        .data
        .get(REV_KEY)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn set_rev(record: &mut Record, rev: u64) {
    record.data.insert(REV_KEY.to_string(), Value::from(rev));
}

#[derive(Clone, Debug)]
enum Backend {
    Memory(Arc<memory::Memory>),
    Sqlite(sqlite::Sqlite),
    Redis(redis::Redis),
    Postgres(postgres::Postgres),
}

#[derive(Clone, Debug)]
pub struct AnyStore {
    backend: Backend,
    indexer: Indexer,
    locks: Arc<lock::LocalLocks>,
    lock_ttl: Duration,
    /// What time it is for every expiry this store decides.
    clock: Clock,
    /// The `/auth/events` streams waiting for their session to end.
    watchers: Arc<ended::Watchers>,
    /// Logout-token `jti`s carried out, by (issuer, jti), until their `exp`.
    seen: Arc<Mutex<HashMap<(String, String), i64>>>,
}

/// More than this many live `jti`s in memory means something is wrong: refuse.
const MAX_SEEN: usize = 100_000;
/// A read-modify-write that keeps losing to other writes gives up after this
/// many attempts (each attempt re-reads; only a flood of writes to one
/// session gets here).
const MAX_ATTEMPTS: usize = 16;

/// The replay-cache key of (issuer, jti); the issuer's length first, so no
/// two pairs share a key.
fn jti_key(issuer: &str, jti: &str) -> String {
    format!("gatehouse:jti:{}:{issuer}:{jti}", issuer.len())
}

fn store_error(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// When a store operation began, and its span (ended when this is dropped).
struct Begun {
    at: std::time::Instant,
    span: tracing::Span,
}

impl AnyStore {
    /// Opens (and for SQLite, creates and migrates) the configured store.
    /// `ttl` bounds how long index entries may outlive their session (the
    /// absolute session lifetime); `indexer` names a session's owner; `clock`
    /// says when a session has expired.
    pub async fn open(
        url: &StoreUrl,
        ttl: Duration,
        indexer: Indexer,
        clock: Clock,
    ) -> Result<Self, String> {
        let watchers = Arc::new(ended::Watchers::default());
        let backend = match url {
            StoreUrl::Memory => Backend::Memory(Default::default()),
            StoreUrl::Sqlite(url) => Backend::Sqlite(sqlite::Sqlite::open(url, indexer).await?),
            StoreUrl::Redis(url) => {
                Backend::Redis(redis::Redis::open(url, ttl, watchers.clone()).await?)
            }
            StoreUrl::Postgres(url) => {
                Backend::Postgres(postgres::Postgres::open(url, watchers.clone()).await?)
            }
        };
        Ok(Self {
            backend,
            indexer,
            locks: Default::default(),
            lock_ttl: lock::LOCK_TTL,
            clock,
            watchers,
            seen: Default::default(),
        })
    }

    /// The same store sealing what it keeps at rest with `sealer` (every
    /// store but memory, which keeps nothing outside this process).
    pub fn sealed_with(mut self, sealer: Sealer) -> Self {
        let sealer = Arc::new(sealer);
        match &mut self.backend {
            Backend::Memory(_) => {}
            Backend::Sqlite(sqlite) => sqlite.sealer = sealer,
            Backend::Redis(redis) => redis.sealer = sealer,
            Backend::Postgres(postgres) => postgres.sealer = sealer,
        }
        self
    }

    /// The same store with Redis locks that expire after `ttl` unless their
    /// holder is alive (tests use a short one to outlast it cheaply).
    #[doc(hidden)]
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Where session `id` (its cookie id) is kept, and with which key.
    pub fn at_rest(&self, id: &Id) -> AtRest {
        match &self.backend {
            Backend::Memory(_) => AtRest::plain(id),
            Backend::Sqlite(sqlite) => sqlite.sealer.at_rest(id),
            Backend::Redis(redis) => redis.sealer.at_rest(id),
            Backend::Postgres(postgres) => postgres.sealer.at_rest(id),
        }
    }

    /// The key the store files session `id` under: what its index, its
    /// lock, its end notices and [`Listed::key`] name it by.
    pub fn key_of(&self, id: &Id) -> Id {
        self.at_rest(id).key
    }

    /// Where a refresh lock must be taken for other instances to see it.
    fn across(&self) -> lock::Across<'_> {
        match &self.backend {
            Backend::Redis(redis) => lock::Across::Redis(&redis.pool),
            Backend::Postgres(postgres) => lock::Across::Postgres(&postgres.pool),
            Backend::Memory(_) | Backend::Sqlite(_) => lock::Across::Nothing,
        }
    }

    /// Session `id` as [`SessionStore::load`] reads it (the same rules, the
    /// same copy kept in this process), but shared instead of copied: a
    /// signed-in read that changes nothing reads its record from it
    /// (`AuthSession::signed_in`) without copying 5 KiB.
    pub async fn load_shared(&self, id: &Id) -> session_store::Result<Option<Arc<Record>>> {
        let now = self.clock.now();
        let started = self.begin("load");
        let loaded = match &self.backend {
            Backend::Memory(m) => Ok(m.load(id, now)),
            Backend::Sqlite(s) => s.load(&s.sealer.at_rest(id), now).await,
            Backend::Redis(r) => r.load(&r.sealer.at_rest(id), now).await,
            Backend::Postgres(p) => p.load(&p.sealer.at_rest(id), now).await,
        };
        self.measured("load", &started, &loaded);
        loaded
    }

    /// Writes `record` if the stored session is still at revision `base`.
    pub async fn write(&self, record: &Record, base: u64) -> session_store::Result<Written> {
        let owner = (self.indexer)(&record.data);
        let now = self.clock.now();
        let started = self.begin("write");
        let written = match &self.backend {
            Backend::Memory(m) => Ok(m.write(record, base, owner, now)),
            Backend::Sqlite(s) => {
                s.write(record, &s.sealer.at_rest(&record.id), base, owner, now)
                    .await
            }
            Backend::Redis(r) => {
                r.write(record, &r.sealer.at_rest(&record.id), base, owner)
                    .await
            }
            Backend::Postgres(p) => {
                p.write(record, &p.sealer.at_rest(&record.id), base, owner, now)
                    .await
            }
        };
        self.measured("write", &started, &written);
        written
    }

    /// Which store this is, for the metrics' `store` label.
    fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            Backend::Sqlite(_) => "sqlite",
            Backend::Redis(_) => "redis",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The start of store operation `op`: when, and its span (`telemetry::traces`).
    fn begin(&self, op: &'static str) -> Begun {
        Begun {
            at: std::time::Instant::now(),
            span: traces::store_span(self.kind(), op),
        }
    }

    /// Counts one store operation begun at `started` (`telemetry::metrics`).
    fn measured<T>(&self, op: &'static str, started: &Begun, out: &session_store::Result<T>) {
        metrics::store_op(self.kind(), op, started.at.elapsed(), out.is_err());
        if out.is_err() {
            traces::failed(&started.span);
        }
    }

    /// Read-modify-write of one stored session: `change` is applied to the
    /// session as stored now and written with a compare-and-set; when another
    /// write lands in between, it is applied again to the newer copy. `None`
    /// when the session does not exist (any more): it is never recreated.
    pub async fn update<T>(
        &self,
        id: &Id,
        mut change: impl FnMut(&mut Record) -> Change<T>,
    ) -> session_store::Result<Option<T>> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(mut record) = self.load(id).await? else {
                return Ok(None);
            };
            let base = rev_of(&record);
            let out = match change(&mut record) {
                Change::Write(out) => out,
                Change::Keep(out) => return Ok(Some(out)),
            };
            match self.write(&record, base).await? {
                Written::Yes => return Ok(Some(out)),
                Written::Gone => return Ok(None),
                Written::Conflict => continue,
            }
        }
        Err(store_error("too many concurrent writes to one session"))
    }

    /// Locks `session_id` for a refresh: in this process, and with Redis or
    /// Postgres across every instance. Fails closed (an error, not an unlocked write)
    /// if the lock is not granted within the lock's TTL.
    pub async fn lock_session(&self, session_id: &str) -> session_store::Result<SessionLock> {
        let deadline = tokio::time::Instant::now() + self.lock_ttl;
        loop {
            if let Some(lock) = self.try_lock_session(session_id).await? {
                return Ok(lock);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(store_error("timed out waiting for the session lock"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One attempt at [`Self::lock_session`]: `None` if someone else holds it.
    pub async fn try_lock_session(
        &self,
        session_id: &str,
    ) -> session_store::Result<Option<SessionLock>> {
        // Named by the session's store key: with sessions keyed by their
        // cookie, Redis never sees a cookie id, not even in a lock's name.
        let name = match session_id.parse::<Id>() {
            Ok(id) => self.key_of(&id).to_string(),
            Err(_) => session_id.to_string(),
        };
        self.locks
            .try_lock(&name, self.across(), self.lock_ttl)
            .await
    }

    /// Whether a logout token with this `jti` from `issuer` was already
    /// carried out (Back-Channel Logout 1.0 §2.6 step 10), across instances
    /// with Redis or Postgres. Two issuers may use the same `jti`.
    pub async fn jti_used(&self, issuer: &str, jti: &str) -> session_store::Result<bool> {
        let now = self.clock.unix_now();
        match &self.backend {
            Backend::Redis(redis) => {
                let found: i64 = redis
                    .pool
                    .exists(jti_key(issuer, jti))
                    .await
                    .map_err(store_error)?;
                return Ok(found > 0);
            }
            Backend::Postgres(postgres) => {
                return postgres.jti_seen(&jti_key(issuer, jti), now).await;
            }
            Backend::Memory(_) | Backend::Sqlite(_) => {}
        }
        let mut seen = self.seen.lock().expect("seen-token lock");
        seen.retain(|_, until| *until >= now - 60);
        // A flood of live tokens is refused rather than remembered without bound.
        Ok(seen.len() >= MAX_SEEN || seen.contains_key(&(issuer.to_string(), jti.to_string())))
    }

    /// Records a logout token as carried out, until a minute after its `exp`.
    /// Called only once its sessions have ended: if ending them failed, the
    /// IdP's retry of the same token must get through.
    pub async fn burn_jti(&self, issuer: &str, jti: &str, exp: i64) -> session_store::Result<()> {
        let now = self.clock.unix_now();
        let until = exp.max(now) + 60;
        match &self.backend {
            Backend::Redis(redis) => {
                let _: Option<String> = redis
                    .pool
                    .set(
                        jti_key(issuer, jti),
                        "1",
                        Some(Expiration::EXAT(until)),
                        None,
                        false,
                    )
                    .await
                    .map_err(store_error)?;
                return Ok(());
            }
            Backend::Postgres(postgres) => {
                return postgres.burn_jti(&jti_key(issuer, jti), until).await;
            }
            Backend::Memory(_) | Backend::Sqlite(_) => {}
        }
        self.seen
            .lock()
            .expect("seen-token lock")
            .insert((issuer.to_string(), jti.to_string()), until);
        Ok(())
    }

    /// Records `jti` under `namespace` until `until` (Unix seconds) and says
    /// whether this was its first use — in one step, so two requests with
    /// the same `jti` cannot both see it as new (on Redis `SET NX`, on
    /// Postgres `INSERT … ON CONFLICT`, across instances). For DPoP proofs
    /// (RFC 9449 §11.1).
    pub async fn first_use_of_jti(
        &self,
        namespace: &str,
        jti: &str,
        until: i64,
    ) -> session_store::Result<bool> {
        let now = self.clock.unix_now();
        match &self.backend {
            Backend::Redis(redis) => {
                let set: Option<String> = redis
                    .pool
                    .set(
                        jti_key(namespace, jti),
                        "1",
                        Some(Expiration::EXAT(until)),
                        Some(fred::types::SetOptions::NX),
                        false,
                    )
                    .await
                    .map_err(store_error)?;
                return Ok(set.is_some());
            }
            Backend::Postgres(postgres) => {
                return postgres
                    .first_use(&jti_key(namespace, jti), until, now)
                    .await;
            }
            Backend::Memory(_) | Backend::Sqlite(_) => {}
        }
        let mut seen = self.seen.lock().expect("seen-token lock");
        seen.retain(|_, kept_until| *kept_until >= now);
        if seen.len() >= MAX_SEEN {
            return Ok(false);
        }
        Ok(seen
            .insert((namespace.to_string(), jti.to_string()), until)
            .is_none())
    }

    /// Removes expired sessions (and their index entries) in the background.
    pub fn spawn_expiry_sweeper(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = this.delete_expired().await {
                    tracing::error!(error = %e, "expired-session sweep failed");
                }
            }
        });
    }

    /// Deletes every expired session, signed in or not.
    pub async fn delete_expired(&self) -> session_store::Result<()> {
        let signed_in = match &self.backend {
            Backend::Memory(m) => m.delete_expired(self.clock.now()).1,
            Backend::Sqlite(s) => s.delete_expired(self.clock.now()).await?,
            Backend::Postgres(p) => p.delete_expired(self.clock.now()).await?,
            // Redis expires sessions, index entries and sets by TTL itself
            // (so its idle ends are not counted).
            Backend::Redis(_) => 0,
        };
        metrics::sessions_ended("idle", signed_in);
        Ok(())
    }

    /// Starts watching session `id` for its end (its deletion, on any
    /// instance sharing this store). Register before reading the session.
    pub fn watch_end(&self, id: Id) -> EndWatch {
        self.watchers.watch(self.key_of(&id))
    }

    /// How many sessions this instance's `/auth/events` streams watch.
    pub fn watched_sessions(&self) -> usize {
        self.watchers.watched()
    }

    /// For `/readyz`: can the store answer right now?
    pub async fn ping(&self) -> Result<(), String> {
        self.load(&Id::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// How many sessions are signed in now, on every instance (for the
    /// `gatehouse_active_sessions` gauge).
    pub async fn signed_in(&self) -> session_store::Result<usize> {
        let now = self.clock.now();
        match &self.backend {
            Backend::Memory(m) => Ok(m.signed_in(now)),
            Backend::Sqlite(s) => s.signed_in(now).await,
            Backend::Redis(r) => r.signed_in().await,
            Backend::Postgres(p) => p.signed_in(now).await,
        }
    }

    /// The store keys ([`Self::key_of`]) of the live sessions of `owner`.
    pub async fn sessions_of(&self, owner: &Owner) -> session_store::Result<Vec<Id>> {
        let now = self.clock.now();
        match &self.backend {
            Backend::Memory(m) => Ok(m.sessions_of(owner, now)),
            Backend::Sqlite(s) => s.sessions_of(owner, now).await,
            Backend::Redis(r) => r.sessions_of(owner).await,
            Backend::Postgres(p) => p.sessions_of(owner, now).await,
        }
    }

    /// The live sessions of `owner`, as far as the store can read them
    /// without their cookies.
    pub async fn listed_of(&self, owner: &Owner) -> session_store::Result<Vec<Listed>> {
        let now = self.clock.now();
        let mut listed = Vec::new();
        for key in self.sessions_of(owner).await? {
            let listing = match &self.backend {
                Backend::Memory(m) => m.load(&key, now).map(|record| Listing {
                    expiry_date: record.expiry_date,
                    facts: None,
                    record: Some(Arc::unwrap_or_clone(record)),
                }),
                Backend::Sqlite(s) => s.listing(&key, now).await?,
                Backend::Redis(r) => r.listing(&key).await?,
                Backend::Postgres(p) => p.listing(&key, now).await?,
            };
            let Some(listing) = listing.filter(|l| l.expiry_date > now) else {
                continue;
            };
            let facts = match (listing.facts, &listing.record) {
                (Some(facts), _) => facts,
                (None, Some(record)) => match (self.indexer)(&record.data) {
                    Some(owner) => owner.facts,
                    None => continue,
                },
                (None, None) => continue,
            };
            listed.push(Listed {
                key,
                expiry_date: listing.expiry_date,
                facts,
                record: listing.record,
            });
        }
        Ok(listed)
    }

    /// Ends the session filed under `key` (a [`Listed::key`], not a cookie
    /// id), on every instance.
    pub async fn end_listed(&self, key: &Id) -> session_store::Result<()> {
        let started = self.begin("delete");
        let deleted = match &self.backend {
            Backend::Memory(m) => {
                m.delete(key);
                Ok(())
            }
            Backend::Sqlite(s) => s.delete(key).await,
            // Both also tell the other instances.
            Backend::Redis(r) => r.delete(key).await,
            Backend::Postgres(p) => p.delete(key).await,
        };
        self.measured("delete", &started, &deleted);
        deleted?;
        self.watchers.ended(key);
        Ok(())
    }

    /// Ends every session of `owner`; returns how many there were.
    pub async fn end_sessions_of(&self, owner: &Owner) -> session_store::Result<usize> {
        let keys = self.sessions_of(owner).await?;
        for key in &keys {
            self.end_listed(key).await?;
        }
        Ok(keys.len())
    }
}

impl AnyStore {
    /// tower-sessions computes a session's expiry from the system clock (its
    /// now plus the idle timeout); the store keeps time by the core's clock,
    /// so the same span is counted from the core's now. A no-op on the system
    /// clock.
    fn on_our_clock(&self, expiry: OffsetDateTime) -> OffsetDateTime {
        expiry + self.clock.ahead()
    }
}

/// tower-sessions' view of the store. Its end-of-response `save` is a
/// compare-and-set too: a request whose copy is older than the stored session
/// (a refresh or a keep-alive landed meanwhile), or whose session was ended
/// while it ran, writes nothing. Its changes are dropped, never merged: the
/// auth core makes every change that must not be lost (tokens, pending
/// logins, sign-in state) with [`AnyStore::update`] before it answers.
#[async_trait]
impl SessionStore for AnyStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        record.expiry_date = self.on_our_clock(record.expiry_date);
        let owner = (self.indexer)(&record.data);
        // A new id until one is free (with sessions keyed by their cookie,
        // what must be free is its store key).
        let started = self.begin("create");
        loop {
            let created = match &self.backend {
                Backend::Memory(m) => Ok(m.create(record, owner.clone())),
                Backend::Sqlite(s) => {
                    s.create(record, &s.sealer.at_rest(&record.id), owner.clone())
                        .await
                }
                Backend::Redis(r) => {
                    r.create(record, &r.sealer.at_rest(&record.id), owner.clone())
                        .await
                }
                Backend::Postgres(p) => {
                    p.create(record, &p.sealer.at_rest(&record.id), owner.clone())
                        .await
                }
            };
            self.measured("create", &started, &created);
            let created = created?;
            if created {
                break;
            }
            record.id = Id::default();
        }
        set_rev(record, 0);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let shifted;
        let record = if self.clock.ahead().is_zero() {
            record
        } else {
            shifted = Record {
                expiry_date: self.on_our_clock(record.expiry_date),
                ..record.clone()
            };
            &shifted
        };
        let written = self.write(record, rev_of(record)).await?;
        if written != Written::Yes {
            tracing::debug!(?written, "stale session copy not saved");
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        Ok(self.load_shared(id).await?.map(Arc::unwrap_or_clone))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.end_listed(&self.key_of(id)).await
    }
}
