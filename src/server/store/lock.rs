//! Per-session locks for the read-modify-write sequences that call out to
//! the IdP (token refresh): in this process always, and across instances when
//! the store is Redis or Postgres. A Redis lock has a TTL so a crashed holder
//! cannot block a session forever; while the guard lives, a watchdog extends
//! that TTL, so a lock never expires under work that is still going on (an
//! IdP answer may take longer than the TTL: two instances must never refresh
//! one session at once, or the second presents a refresh token the first
//! just rotated out). A Postgres lock is an advisory lock held by a
//! connection kept for as long as the guard lives: it ends with the guard,
//! or with the connection if the holder dies.

use std::{
    collections::HashMap,
    sync::{Mutex, Weak},
    time::Duration,
};

use fred::{
    prelude::{KeysInterface, LuaInterface, Pool as RedisPool},
    types::{Expiration, SetOptions},
};
use tokio::task::JoinHandle;
use tower_sessions::{session::Id, session_store};

use super::{postgres::lock_key, store_error};

/// Where a lock must also be taken so that other instances see it.
#[derive(Clone, Copy)]
pub(super) enum Across<'a> {
    /// This process is the only one using the store.
    Nothing,
    Redis(&'a RedisPool),
    Postgres(&'a sqlx::PgPool),
}

/// A Redis lock outlives a crashed holder by at most this long.
pub(super) const LOCK_TTL: Duration = Duration::from_secs(10);

/// Delete the lock only if it still holds our token.
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/// Push the lock's expiry back only if it still holds our token.
const EXTEND: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// One async lock per session id within this process; entries disappear once
/// nobody holds them.
#[derive(Debug, Default)]
pub(super) struct LocalLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl LocalLocks {
    fn lock_for(&self, key: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().expect("lock map poisoned");
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        let lock = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_string(), std::sync::Arc::downgrade(&lock));
        lock
    }

    /// One attempt: `None` if another request of this process holds it, or
    /// (`across` a shared store) another instance.
    pub(super) async fn try_lock(
        &self,
        session_id: &str,
        across: Across<'_>,
        ttl: Duration,
    ) -> session_store::Result<Option<SessionLock>> {
        let Ok(local) = self.lock_for(session_id).try_lock_owned() else {
            return Ok(None);
        };
        let pool = match across {
            Across::Nothing => {
                return Ok(Some(SessionLock {
                    _local: local,
                    redis: None,
                    _postgres: None,
                }))
            }
            Across::Postgres(pool) => {
                let mut connection = pool.acquire().await.map_err(store_error)?;
                let granted: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(lock_key(session_id))
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(store_error)?;
                return Ok(granted.then_some(SessionLock {
                    _local: local,
                    redis: None,
                    _postgres: Some(PostgresLock {
                        connection: Some(connection),
                        key: lock_key(session_id),
                    }),
                }));
            }
            Across::Redis(pool) => pool,
        };
        let key = format!("gatehouse:lock:{session_id}");
        let token = Id::default().to_string();
        let ttl_ms = ttl.as_millis() as i64;
        let granted: Option<String> = pool
            .set(
                &key,
                token.as_str(),
                Some(Expiration::PX(ttl_ms)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(store_error)?;
        if granted.is_none() {
            return Ok(None);
        }
        let watchdog = tokio::spawn({
            let (pool, key, token) = (pool.clone(), key.clone(), token.clone());
            async move {
                let mut tick = tokio::time::interval(ttl / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let extended: Result<i64, _> = pool
                        .eval(
                            EXTEND,
                            vec![key.clone()],
                            vec![token.clone(), ttl_ms.to_string()],
                        )
                        .await;
                    if !matches!(extended, Ok(1)) {
                        // Lost (or Redis is gone): the holder's writes are
                        // still guarded by the record's revision check.
                        tracing::warn!(%key, "session lock could not be extended");
                        return;
                    }
                }
            }
        });
        Ok(Some(SessionLock {
            _local: local,
            _postgres: None,
            redis: Some(RedisLock {
                pool: pool.clone(),
                key,
                token,
                watchdog,
            }),
        }))
    }
}

struct RedisLock {
    pool: RedisPool,
    key: String,
    token: String,
    watchdog: JoinHandle<()>,
}

/// Held while one request refreshes a session's tokens. Dropping it releases
/// the lock (the Redis part only if it is still ours; the Postgres part by
/// handing its connection back to the pool, which unlocks it).
pub struct SessionLock {
    _local: tokio::sync::OwnedMutexGuard<()>,
    redis: Option<RedisLock>,
    _postgres: Option<PostgresLock>,
}

/// An advisory lock and the connection that holds it.
struct PostgresLock {
    connection: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    key: i64,
}

impl Drop for PostgresLock {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        let key = self.key;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Closing the connection ends its Postgres session and its locks.
            drop(connection.detach());
            return;
        };
        runtime.spawn(async move {
            let unlocked: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .fetch_one(&mut *connection)
                .await;
            if !matches!(unlocked, Ok(true)) {
                // Never hand a connection that may still hold it back to the pool.
                let _ = connection.close().await;
            }
        });
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some(RedisLock {
            pool,
            key,
            token,
            watchdog,
        }) = self.redis.take()
        {
            watchdog.abort();
            tokio::spawn(async move {
                let _: Result<i64, _> = pool.eval(RELEASE, vec![key], vec![token]).await;
            });
        }
    }
}
