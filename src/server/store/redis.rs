//! The Redis store (`SESSION_STORE=redis://…`), shared by every instance.
//!
//! Keys: `<id>` the record (MessagePack, as tower-sessions' Redis store
//! writes it, so sessions saved before this module existed still load;
//! with `SESSION_KEY_IN_COOKIE` the id is the session's store key, never its
//! cookie id, and the record is sealed: `sealed.rs`),
//! `gatehouse:rev:<id>` its revision, `gatehouse:idx:<id>` its owner and the
//! sets `gatehouse:sub:<sub>` / `gatehouse:sid:<sid>` of session ids. Every
//! write is one Lua script, so the revision check, the write and the index
//! update are atomic. (The scripts name keys they build themselves: this is
//! for a single Redis server or a primary with replicas, not Redis Cluster.)
//!
//! Deleting or rewriting a session publishes its id; every instance
//! subscribes (`listener.rs`), forgets its copy and wakes the `/auth/events`
//! streams it holds for that session.
//!
//! Each instance keeps the sessions it read (`cache.rs`). While it holds a
//! lease (`lease.rs`: every change reaches it before the change's response
//! returns) a kept copy is served without asking Redis; without one, a read
//! asks Redis for the revision only (a few bytes, not the 5 KiB record) and
//! uses the kept copy when it is at that revision.

use std::{sync::Arc, time::Duration};

use fred::{
    bytes::Bytes,
    prelude::{
        ClientLike, Config as RedisConfig, KeysInterface, LuaInterface, Pool as RedisPool,
        SetsInterface,
    },
    types::Value,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use tower_sessions::{
    session::{Id, Record},
    session_store,
};

use super::{
    ended::Watchers,
    listener::{self, Shared},
    sealed::{AtRest, Listing, Sealer},
    set_rev, store_error, Owner, OwnerEntry, Written,
};

#[derive(Clone, Debug)]
pub(super) struct Redis {
    pub(super) pool: RedisPool,
    /// How long the owner sets may outlive their last session.
    ttl: Duration,
    /// The sessions this instance read, its lease, its pending writes.
    shared: Arc<Shared>,
    /// Stops the listener when the last copy of the store is dropped.
    _listening: Arc<watch::Sender<()>>,
    /// Seals each record's bytes at rest (`SESSION_ENCRYPTION_KEY`).
    pub(super) sealer: Arc<Sealer>,
}

/// Moves session `id`'s index entry to `sub`/`sid` (`sub` empty: not signed
/// in), removing it from the sets of its former owner.
const REINDEX: &str = r#"
local function reindex(id, sub, sid, exat, ttl)
  local idx = 'gatehouse:idx:' .. id
  local old = redis.call('GET', idx)
  if old then
    local o = cjson.decode(old)
    if o[1] ~= sub then redis.call('SREM', 'gatehouse:sub:' .. o[1], id) end
    if o[2] ~= '' and o[2] ~= sid then redis.call('SREM', 'gatehouse:sid:' .. o[2], id) end
  end
  if sub == '' then
    redis.call('DEL', idx)
    return
  end
  redis.call('SET', idx, cjson.encode({sub, sid}), 'EXAT', exat)
  redis.call('SADD', 'gatehouse:sub:' .. sub, id)
  redis.call('EXPIRE', 'gatehouse:sub:' .. sub, ttl)
  if sid ~= '' then
    redis.call('SADD', 'gatehouse:sid:' .. sid, id)
    redis.call('EXPIRE', 'gatehouse:sid:' .. sid, ttl)
  end
end
"#;

/// Publishes `id` and who waits for acknowledgements (`note`: writer and
/// nonce) on `channel`, and returns the roll call as it is at that moment:
/// name, milliseconds left, name, … (`lease.rs`). The key and channel names
/// are `listener.rs`' (checked by a test below).
const ANNOUNCE: &str = r#"
local function announce(channel, id, note)
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  redis.call('ZREMRANGEBYSCORE', 'gatehouse:instances', '-inf', now)
  redis.call('PUBLISH', channel, id .. ' ' .. note)
  local listed = redis.call('ZRANGE', 'gatehouse:instances', 0, -1, 'WITHSCORES')
  local out = {}
  for i = 1, #listed, 2 do
    out[#out + 1] = listed[i]
    out[#out + 1] = math.floor(tonumber(listed[i + 1]) - now)
  end
  return out
end
"#;

/// KEYS: record, revision. ARGV: data, exat, id, sub, sid, ttl.
/// 1 when created, 0 when the id is taken.
const CREATE: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], '0', 'EXAT', ARGV[2])
reindex(ARGV[3], ARGV[4], ARGV[5], ARGV[2], ARGV[6])
return 1
"#;

/// KEYS: record, revision. ARGV: data, exat, id, sub, sid, ttl, base
/// revision, note. {1, roll call…} written, {0} another write came first,
/// {-1} the session is gone.
const WRITE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[7]) then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
redis.call('SET', KEYS[2], current + 1, 'EXAT', ARGV[2])
reindex(ARGV[3], ARGV[4], ARGV[5], ARGV[2], ARGV[6])
local out = announce('gatehouse:written', ARGV[3], ARGV[8])
table.insert(out, 1, 1)
return out
"#;

/// KEYS: record, revision. ARGV: id, note. The roll call.
const DELETE: &str = r#"
redis.call('DEL', KEYS[1], KEYS[2])
reindex(ARGV[1], '', '', 0, 0)
return announce('gatehouse:ended', ARGV[1], ARGV[2])
"#;

fn rev_key(id: &Id) -> String {
    format!("gatehouse:rev:{id}")
}

impl Redis {
    pub(super) async fn open(
        url: &url::Url,
        ttl: Duration,
        watchers: Arc<Watchers>,
    ) -> Result<Self, String> {
        let config = RedisConfig::from_url(url.as_str())
            .map_err(|e| format!("SESSION_STORE={}: {e}", redacted(url)))?;
        let pool = RedisPool::new(config.clone(), None, None, None, 4)
            .map_err(|e| format!("SESSION_STORE={}: {e}", redacted(url)))?;
        pool.init()
            .await
            .map_err(|e| format!("SESSION_STORE={}: cannot connect: {e}", redacted(url)))?;
        let shared = Arc::new(Shared {
            name: uuid::Uuid::new_v4().simple().to_string(),
            cache: Default::default(),
            lease: Default::default(),
            acks: Default::default(),
            watchers,
        });
        let (stop, listening) = watch::channel(());
        listener::listen(config, pool.clone(), shared.clone(), listening)
            .await
            .map_err(|e| format!("SESSION_STORE={}: cannot subscribe: {e}", redacted(url)))?;
        Ok(Self {
            pool,
            ttl,
            shared,
            _listening: Arc::new(stop),
            sealer: Default::default(),
        })
    }

    async fn script<T: fred::types::FromValue>(
        &self,
        body: &str,
        id: &Id,
        args: Vec<Value>,
    ) -> session_store::Result<T> {
        let script = format!("{REINDEX}{ANNOUNCE}{body}");
        self.pool
            .eval(script, vec![id.to_string(), rev_key(id)], args)
            .await
            .map_err(store_error)
    }

    /// Who the listed instances are (`ANNOUNCE`'s answer from `from` on).
    fn roll_call(values: &[Value]) -> Vec<(String, u64)> {
        values
            .chunks(2)
            .filter_map(|pair| match pair {
                [name, left] => Some((name.as_string()?, left.as_u64().unwrap_or(0))),
                _ => None,
            })
            .collect()
    }

    fn args(
        &self,
        record: &Record,
        at: &AtRest,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<Vec<Value>> {
        let data = self
            .sealer
            .seal_record(record, at, owner.as_ref().map(|o| &o.facts))?;
        let (sub, sid) = match owner {
            Some(OwnerEntry { sub, sid, .. }) => (sub, sid.unwrap_or_default()),
            None => (String::new(), String::new()),
        };
        Ok(vec![
            Value::Bytes(Bytes::from(data)),
            Value::from(record.expiry_date.unix_timestamp()),
            Value::from(at.key.to_string()),
            Value::from(sub),
            Value::from(sid),
            Value::from(self.ttl.as_secs() as i64),
        ])
    }

    pub(super) async fn load(
        &self,
        at: &AtRest,
        now: OffsetDateTime,
    ) -> session_store::Result<Option<Arc<Record>>> {
        let id = &at.key;
        // The revision key lives and dies with the record (same EXAT, same
        // scripts); a session written before revisions existed has none and
        // is read whole below.
        let cache = &self.shared.cache;
        if self.shared.lease.held() {
            if let Some(record) = cache.get(id, now) {
                return Ok(Some(record));
            }
        } else {
            let rev: Option<u64> = self.pool.get(rev_key(id)).await.map_err(store_error)?;
            if let Some(record) = rev.and_then(|rev| cache.get_at(id, rev, now)) {
                return Ok(Some(record));
            }
        }
        // Noted before the query whose answer may fill the cache.
        let before = cache.before_read();
        let values: Vec<Value> = self
            .pool
            .mget(vec![id.to_string(), rev_key(id)])
            .await
            .map_err(store_error)?;
        let mut values = values.into_iter();
        let data = match values.next() {
            Some(Value::Bytes(bytes)) => bytes.to_vec(),
            Some(Value::String(s)) => s.as_bytes().to_vec(),
            _ => return Ok(None),
        };
        let rev = values.next().and_then(|v| v.as_u64()).unwrap_or(0);
        let Some(mut record) = self.sealer.open_record(&data, at)? else {
            return Ok(None);
        };
        if record.expiry_date <= now {
            return Ok(None);
        }
        set_rev(&mut record, rev);
        let record = Arc::new(record);
        cache.fill(id, &record, before);
        Ok(Some(record))
    }

    /// What can be read of the session filed under `key` without its cookie.
    pub(super) async fn listing(&self, key: &Id) -> session_store::Result<Option<Listing>> {
        let stored: Option<Bytes> = self.pool.get(key.to_string()).await.map_err(store_error)?;
        Ok(stored.and_then(|stored| self.sealer.open_listing(&stored, key)))
    }

    /// Stores a new session at `at`; `false` when its key is taken.
    pub(super) async fn create(
        &self,
        record: &Record,
        at: &AtRest,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<bool> {
        let args = self.args(record, at, owner)?;
        Ok(self.script::<i64>(CREATE, &at.key, args).await? == 1)
    }

    pub(super) async fn write(
        &self,
        record: &Record,
        at: &AtRest,
        base: u64,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<Written> {
        let expecting = self.shared.acks.expect();
        let mut args = self.args(record, at, owner)?;
        args.push(Value::from(base as i64));
        args.push(Value::from(self.note(expecting.nonce)));
        let written = self.script::<Vec<Value>>(WRITE, &at.key, args).await;
        self.shared.cache.forget(&at.key);
        let written = written?;
        Ok(match written.first().and_then(Value::as_i64) {
            Some(1) => {
                let listed = Self::roll_call(&written[1..]);
                expecting.all_heard(&self.shared.name, listed).await;
                Written::Yes
            }
            Some(0) => Written::Conflict,
            _ => Written::Gone,
        })
    }

    pub(super) async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let expecting = self.shared.acks.expect();
        let args = vec![
            Value::from(id.to_string()),
            Value::from(self.note(expecting.nonce)),
        ];
        let deleted = self.script::<Vec<Value>>(DELETE, id, args).await;
        self.shared.cache.forget(id);
        let listed = Self::roll_call(&deleted?);
        expecting.all_heard(&self.shared.name, listed).await;
        Ok(())
    }

    /// Who waits for acknowledgements of a change, and of which one.
    fn note(&self, nonce: u64) -> String {
        format!("{} {nonce}", self.shared.name)
    }

    /// How many sessions are signed in: their index entries, counted with
    /// `SCAN` (a page at a time: Redis is never blocked for the whole count,
    /// which takes one round trip per 1,000 keys).
    pub(super) async fn signed_in(&self) -> session_store::Result<usize> {
        use futures::TryStreamExt;
        self.pool
            .next()
            .scan_buffered("gatehouse:idx:*", Some(1000), None)
            .try_fold(0, |n, _| async move { Ok(n + 1) })
            .await
            .map_err(store_error)
    }

    pub(super) async fn sessions_of(&self, owner: &Owner) -> session_store::Result<Vec<Id>> {
        let set = match owner {
            Owner::Sub(sub) => format!("gatehouse:sub:{sub}"),
            Owner::Sid(sid) => format!("gatehouse:sid:{sid}"),
        };
        let members: Vec<String> = self.pool.smembers(&set).await.map_err(store_error)?;
        let mut live = Vec::new();
        for member in members {
            let alive: i64 = self
                .pool
                .exists(format!("gatehouse:idx:{member}"))
                .await
                .map_err(store_error)?;
            match member.parse::<Id>() {
                Ok(id) if alive > 0 => live.push(id),
                _ => {
                    let _: i64 = self.pool.srem(&set, member).await.map_err(store_error)?;
                }
            }
        }
        Ok(live)
    }
}

/// The URL without its password, for messages and logs.
fn redacted(url: &url::Url) -> String {
    crate::server::config::without_password(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::listener::{ENDED_CHANNEL, INSTANCES, WRITTEN_CHANNEL};

    /// The scripts publish where the listener subscribes and read the roll
    /// call it writes.
    #[test]
    fn scripts_name_the_channels_and_roll_call_the_listener_uses() {
        let quoted = |name: &str| format!("'{name}'");
        assert!(ANNOUNCE.matches(&quoted(INSTANCES)).count() == 2);
        assert!(WRITE.contains(&quoted(WRITTEN_CHANNEL)));
        assert!(DELETE.contains(&quoted(ENDED_CHANNEL)));
    }
}
