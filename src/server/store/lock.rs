//! Per-session locks for the read-modify-write sequences that call out to
//! the IdP (token refresh): in this process always, and across instances when
//! the store is Redis. A Redis lock has a TTL so a crashed holder cannot block
//! a session forever; while the guard lives, a watchdog extends that TTL, so a
//! lock never expires under work that is still going on (an IdP answer may
//! take longer than the TTL: two instances must never refresh one session at
//! once, or the second presents a refresh token the first just rotated out).

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

use super::store_error;

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

    /// One attempt: `None` if another request of this process holds it; with
    /// `redis`, also `None` if another instance holds it.
    pub(super) async fn try_lock(
        &self,
        session_id: &str,
        redis: Option<&RedisPool>,
        ttl: Duration,
    ) -> session_store::Result<Option<SessionLock>> {
        let Ok(local) = self.lock_for(session_id).try_lock_owned() else {
            return Ok(None);
        };
        let Some(pool) = redis else {
            return Ok(Some(SessionLock {
                _local: local,
                redis: None,
            }));
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
/// the lock (the Redis part only if it is still ours).
pub struct SessionLock {
    _local: tokio::sync::OwnedMutexGuard<()>,
    redis: Option<RedisLock>,
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
