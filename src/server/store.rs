//! The session store chosen by `SESSION_STORE`: the maintained tower-sessions
//! stores (memory, SQLite, Redis) behind one type, plus what several requests
//! or several instances must agree on:
//! - an index of signed-in sessions by `sub` and `sid`, kept by the store
//!   itself (every save and delete updates it), so back-channel logout and
//!   session lists find a user's sessions without scanning;
//! - a per-session lock for read-modify-write sequences (token refresh, idle
//!   extension): in-process always, and across instances with Redis;
//! - the logout-token replay cache (`jti`s seen), shared through Redis.

use std::{
    collections::HashMap,
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use fred::{
    prelude::{
        ClientLike, Config as RedisConfig, KeysInterface, LuaInterface, Pool as RedisPool,
        SetsInterface,
    },
    types::{Expiration, SetOptions},
};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
    Row, SqlitePool,
};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, ExpiredDeletion},
    MemoryStore, SessionStore,
};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_sqlx_store::SqliteStore;

use super::config::StoreUrl;
use crate::auth::session::index_entry;

/// Which sessions to find: those of one IdP session, or of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Sid(String),
    Sub(String),
}

#[derive(Clone, Debug)]
struct Entry {
    sub: String,
    sid: Option<String>,
    expiry: OffsetDateTime,
}

#[derive(Clone, Debug)]
enum Backend {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
    Redis(RedisStore<RedisPool>),
}

#[derive(Clone, Debug)]
enum Index {
    Memory(Arc<Mutex<HashMap<Id, Entry>>>),
    Sqlite(SqlitePool),
    /// `gatehouse:idx:<id>` → `sub\tsid`; sets `gatehouse:sub:<sub>`, `gatehouse:sid:<sid>`.
    Redis {
        pool: RedisPool,
        ttl: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct AnyStore {
    backend: Backend,
    index: Index,
    local_locks: Arc<LocalLocks>,
    seen: Arc<Mutex<HashMap<String, i64>>>,
}

/// One async lock per session id within this process; entries disappear once
/// nobody holds them.
#[derive(Debug, Default)]
struct LocalLocks(Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>);

impl LocalLocks {
    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().expect("lock map poisoned");
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = map.get(key).and_then(std::sync::Weak::upgrade) {
            return existing;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), Arc::downgrade(&lock));
        lock
    }
}

/// Held while one request refreshes tokens or extends a session. Dropping it
/// releases the lock (the Redis part only if it is still ours).
pub struct SessionLock {
    _local: tokio::sync::OwnedMutexGuard<()>,
    redis: Option<(RedisPool, String, String)>,
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some((pool, key, token)) = self.redis.take() {
            tokio::spawn(async move {
                let _: Result<i64, _> = pool.eval(RELEASE_LOCK, vec![key], vec![token]).await;
            });
        }
    }
}

/// Delete the lock only if it still holds our token (it may have expired and
/// been taken by another instance meanwhile).
const RELEASE_LOCK: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// A lock outlives a crashed holder by at most this long.
const LOCK_TTL_MS: i64 = 10_000;
/// More than this many live `jti`s in memory means something is wrong: refuse.
const MAX_SEEN: usize = 100_000;

fn store_error(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

impl AnyStore {
    /// Opens (and for SQLite, creates and migrates) the configured store.
    /// `ttl` bounds how long index entries may outlive their session (the
    /// absolute session lifetime).
    pub async fn open(url: &StoreUrl, ttl: Duration) -> Result<Self, String> {
        let (backend, index) = Self::open_backend(url, ttl).await?;
        Ok(Self {
            backend,
            index,
            local_locks: Default::default(),
            seen: Default::default(),
        })
    }

    async fn open_backend(url: &StoreUrl, ttl: Duration) -> Result<(Backend, Index), String> {
        match url {
            StoreUrl::Memory => Ok((
                Backend::Memory(MemoryStore::default()),
                Index::Memory(Default::default()),
            )),
            StoreUrl::Sqlite(url) => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| format!("SESSION_STORE={url}: {e}"))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5));
                if let Some(dir) = Path::new(options.get_filename()).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            format!("SESSION_STORE={url}: cannot create {}: {e}", dir.display())
                        })?;
                    }
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(options)
                    .await
                    .map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
                let store = SqliteStore::new(pool.clone());
                store
                    .migrate()
                    .await
                    .map_err(|e| format!("SESSION_STORE={url}: migration failed: {e}"))?;
                for statement in [
                    "CREATE TABLE IF NOT EXISTS gatehouse_session_index (
                        id TEXT PRIMARY KEY NOT NULL,
                        sub TEXT NOT NULL,
                        sid TEXT,
                        expiry_date INTEGER NOT NULL)",
                    "CREATE INDEX IF NOT EXISTS gatehouse_session_index_sub ON gatehouse_session_index (sub)",
                    "CREATE INDEX IF NOT EXISTS gatehouse_session_index_sid ON gatehouse_session_index (sid)",
                ] {
                    sqlx::query(statement)
                        .execute(&pool)
                        .await
                        .map_err(|e| format!("SESSION_STORE={url}: index migration failed: {e}"))?;
                }
                Ok((Backend::Sqlite(store), Index::Sqlite(pool)))
            }
            StoreUrl::Redis(url) => {
                let config = RedisConfig::from_url(url.as_str())
                    .map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
                let pool = RedisPool::new(config, None, None, None, 4)
                    .map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
                pool.init()
                    .await
                    .map_err(|e| format!("SESSION_STORE={url}: cannot connect: {e}"))?;
                Ok((
                    Backend::Redis(RedisStore::new(pool.clone())),
                    Index::Redis { pool, ttl },
                ))
            }
        }
    }

    /// Locks `session_id` for a read-modify-write sequence: in this process,
    /// and with Redis across every instance. Fails closed (an error, not an
    /// unlocked write) if the lock is not granted within its TTL.
    pub async fn lock_session(&self, session_id: &str) -> session_store::Result<SessionLock> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LOCK_TTL_MS as u64);
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
        let Ok(local) = self.local_locks.lock_for(session_id).try_lock_owned() else {
            return Ok(None);
        };
        let Index::Redis { pool, .. } = &self.index else {
            return Ok(Some(SessionLock {
                _local: local,
                redis: None,
            }));
        };
        let key = format!("gatehouse:lock:{session_id}");
        let token = Id::default().to_string();
        let granted: Option<String> = pool
            .set(
                &key,
                token.as_str(),
                Some(Expiration::PX(LOCK_TTL_MS)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(store_error)?;
        Ok(granted.map(|_| SessionLock {
            _local: local,
            redis: Some((pool.clone(), key, token)),
        }))
    }

    /// True the first time a logout token's `jti` is presented before its
    /// `exp` (Back-Channel Logout 1.0 §2.6 step 10), across instances with Redis.
    pub async fn first_use_of_jti(&self, jti: &str, exp: i64) -> session_store::Result<bool> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if let Index::Redis { pool, .. } = &self.index {
            let until = exp.max(now) + 60;
            let set: Option<String> = pool
                .set(
                    format!("gatehouse:jti:{jti}"),
                    "1",
                    Some(Expiration::EXAT(until)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(store_error)?;
            return Ok(set.is_some());
        }
        let mut seen = self.seen.lock().expect("seen-token lock");
        seen.retain(|_, until| *until >= now - 60);
        if seen.contains_key(jti) || seen.len() >= MAX_SEEN {
            return Ok(false);
        }
        seen.insert(jti.to_string(), exp);
        Ok(true)
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

    async fn delete_expired(&self) -> session_store::Result<()> {
        let now = OffsetDateTime::now_utc();
        match (&self.backend, &self.index) {
            (Backend::Sqlite(store), Index::Sqlite(pool)) => {
                store.delete_expired().await?;
                sqlx::query("DELETE FROM gatehouse_session_index WHERE expiry_date < ?")
                    .bind(now.unix_timestamp())
                    .execute(pool)
                    .await
                    .map_err(store_error)?;
            }
            (Backend::Memory(store), Index::Memory(index)) => {
                // MemoryStore only hides expired records; delete them for real.
                let expired: Vec<Id> = {
                    let index = index.lock().expect("index lock");
                    index
                        .iter()
                        .filter(|(_, e)| e.expiry < now)
                        .map(|(id, _)| *id)
                        .collect()
                };
                for id in expired {
                    store.delete(&id).await?;
                    index.lock().expect("index lock").remove(&id);
                }
            }
            // Redis expires sessions, index entries and sets by TTL itself.
            (Backend::Redis(_), Index::Redis { .. }) => {}
            _ => unreachable!("backend and index are built together"),
        }
        Ok(())
    }

    /// For `/readyz`: can the store answer right now?
    pub async fn ping(&self) -> Result<(), String> {
        self.load(&Id::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The ids of the live sessions of `owner`.
    pub async fn sessions_of(&self, owner: &Owner) -> session_store::Result<Vec<Id>> {
        let now = OffsetDateTime::now_utc();
        match &self.index {
            Index::Memory(index) => Ok(index
                .lock()
                .expect("index lock")
                .iter()
                .filter(|(_, e)| e.expiry >= now)
                .filter(|(_, e)| match owner {
                    Owner::Sub(sub) => &e.sub == sub,
                    Owner::Sid(sid) => e.sid.as_ref() == Some(sid),
                })
                .map(|(id, _)| *id)
                .collect()),
            Index::Sqlite(pool) => {
                let (sql, value) = match owner {
                    Owner::Sub(sub) => (
                        "SELECT id FROM gatehouse_session_index WHERE sub = ? AND expiry_date >= ?",
                        sub,
                    ),
                    Owner::Sid(sid) => (
                        "SELECT id FROM gatehouse_session_index WHERE sid = ? AND expiry_date >= ?",
                        sid,
                    ),
                };
                let rows = sqlx::query(sql)
                    .bind(value)
                    .bind(now.unix_timestamp())
                    .fetch_all(pool)
                    .await
                    .map_err(store_error)?;
                Ok(rows
                    .iter()
                    .filter_map(|row| row.try_get::<String, _>("id").ok())
                    .filter_map(|id| id.parse::<Id>().ok())
                    .collect())
            }
            Index::Redis { pool, .. } => {
                let set = match owner {
                    Owner::Sub(sub) => format!("gatehouse:sub:{sub}"),
                    Owner::Sid(sid) => format!("gatehouse:sid:{sid}"),
                };
                let members: Vec<String> = pool.smembers(&set).await.map_err(store_error)?;
                let mut live = Vec::new();
                for member in members {
                    let alive: i64 = pool
                        .exists(format!("gatehouse:idx:{member}"))
                        .await
                        .map_err(store_error)?;
                    match member.parse::<Id>() {
                        Ok(id) if alive > 0 => live.push(id),
                        _ => {
                            let _: i64 = pool.srem(&set, member).await.map_err(store_error)?;
                        }
                    }
                }
                Ok(live)
            }
        }
    }

    /// The live sessions of `owner`, with their stored records.
    pub async fn records_of(&self, owner: &Owner) -> session_store::Result<Vec<Record>> {
        let mut records = Vec::new();
        for id in self.sessions_of(owner).await? {
            if let Some(record) = self.load(&id).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Ends every session of `owner`; returns how many there were.
    pub async fn end_sessions_of(&self, owner: &Owner) -> session_store::Result<usize> {
        let ids = self.sessions_of(owner).await?;
        for id in &ids {
            self.delete(id).await?;
        }
        Ok(ids.len())
    }

    async fn index_record(&self, record: &Record) -> session_store::Result<()> {
        let Some((sub, sid)) = index_entry(&record.data) else {
            return self.unindex(&record.id).await;
        };
        match &self.index {
            Index::Memory(index) => {
                index.lock().expect("index lock").insert(
                    record.id,
                    Entry {
                        sub,
                        sid,
                        expiry: record.expiry_date,
                    },
                );
            }
            Index::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO gatehouse_session_index (id, sub, sid, expiry_date) VALUES (?, ?, ?, ?)
                     ON CONFLICT(id) DO UPDATE SET sub = excluded.sub, sid = excluded.sid, expiry_date = excluded.expiry_date",
                )
                .bind(record.id.to_string())
                .bind(sub)
                .bind(sid)
                .bind(record.expiry_date.unix_timestamp())
                .execute(pool)
                .await
                .map_err(store_error)?;
            }
            Index::Redis { pool, ttl } => {
                let id = record.id.to_string();
                let entry = format!("{sub}\t{}", sid.as_deref().unwrap_or(""));
                let _: () = pool
                    .set(
                        format!("gatehouse:idx:{id}"),
                        entry,
                        Some(Expiration::EXAT(record.expiry_date.unix_timestamp())),
                        None,
                        false,
                    )
                    .await
                    .map_err(store_error)?;
                let mut sets = vec![format!("gatehouse:sub:{sub}")];
                sets.extend(sid.map(|sid| format!("gatehouse:sid:{sid}")));
                for set in sets {
                    let _: i64 = pool.sadd(&set, id.as_str()).await.map_err(store_error)?;
                    let _: i64 = pool
                        .expire(&set, ttl.as_secs() as i64, None)
                        .await
                        .map_err(store_error)?;
                }
            }
        }
        Ok(())
    }

    async fn unindex(&self, id: &Id) -> session_store::Result<()> {
        match &self.index {
            Index::Memory(index) => {
                index.lock().expect("index lock").remove(id);
            }
            Index::Sqlite(pool) => {
                sqlx::query("DELETE FROM gatehouse_session_index WHERE id = ?")
                    .bind(id.to_string())
                    .execute(pool)
                    .await
                    .map_err(store_error)?;
            }
            Index::Redis { pool, .. } => {
                let key = format!("gatehouse:idx:{id}");
                let entry: Option<String> = pool.get(&key).await.map_err(store_error)?;
                if let Some((sub, sid)) = entry.as_deref().and_then(|e| e.split_once('\t')) {
                    let _: i64 = pool
                        .srem(format!("gatehouse:sub:{sub}"), id.to_string())
                        .await
                        .map_err(store_error)?;
                    if !sid.is_empty() {
                        let _: i64 = pool
                            .srem(format!("gatehouse:sid:{sid}"), id.to_string())
                            .await
                            .map_err(store_error)?;
                    }
                }
                let _: i64 = pool.del(&key).await.map_err(store_error)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for AnyStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match &self.backend {
            Backend::Memory(s) => s.create(record).await?,
            Backend::Sqlite(s) => s.create(record).await?,
            Backend::Redis(s) => s.create(record).await?,
        }
        self.index_record(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match &self.backend {
            Backend::Memory(s) => s.save(record).await?,
            Backend::Sqlite(s) => s.save(record).await?,
            Backend::Redis(s) => s.save(record).await?,
        }
        self.index_record(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match &self.backend {
            Backend::Memory(s) => s.load(id).await,
            Backend::Sqlite(s) => s.load(id).await,
            Backend::Redis(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.backend {
            Backend::Memory(s) => s.delete(id).await?,
            Backend::Sqlite(s) => s.delete(id).await?,
            Backend::Redis(s) => s.delete(id).await?,
        }
        self.unindex(id).await
    }
}
