//! The Redis store (`SESSION_STORE=redis://…`), shared by every instance.
//!
//! Keys: `<id>` the record (MessagePack, as tower-sessions' Redis store
//! writes it, so sessions saved before this module existed still load),
//! `gatehouse:rev:<id>` its revision, `gatehouse:idx:<id>` its owner and the
//! sets `gatehouse:sub:<sub>` / `gatehouse:sid:<sid>` of session ids. Every
//! write is one Lua script, so the revision check, the write and the index
//! update are atomic. (The scripts name keys they build themselves: this is
//! for a single Redis server or a primary with replicas, not Redis Cluster.)
//!
//! Deleting a session also publishes its id on `gatehouse:ended`; every
//! instance subscribes, and wakes the `/auth/events` streams it holds for
//! that session.
//!
//! Each instance keeps the sessions it read (`cache.rs`). A read asks Redis
//! for the revision only (a few bytes, not the 5 KiB record) and uses the
//! kept copy when it is at that revision; a session changed or ended by any
//! instance has another revision or none, so no instance serves it stale.

use std::{sync::Arc, time::Duration};

use fred::{
    bytes::Bytes,
    clients::SubscriberClient,
    prelude::{
        Builder, ClientLike, Config as RedisConfig, EventInterface, KeysInterface, LuaInterface,
        Pool as RedisPool, PubsubInterface, ReconnectPolicy, SetsInterface,
    },
    types::Value,
};
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use tower_sessions::{
    session::{Id, Record},
    session_store,
};

use super::{cache::Cache, ended::Watchers, set_rev, store_error, Owner, OwnerEntry, Written};

#[derive(Clone, Debug)]
pub(super) struct Redis {
    pub(super) pool: RedisPool,
    /// How long the owner sets may outlive their last session.
    ttl: Duration,
    /// Hears `gatehouse:ended` (kept here so it lives as long as the store).
    _ends: SubscriberClient,
    /// The sessions this instance read, each at the revision it read.
    cache: Arc<Cache>,
}

/// Where a deleted session's id is published.
const ENDED_CHANNEL: &str = "gatehouse:ended";

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

/// KEYS: record, revision. ARGV: data, exat, id, sub, sid, ttl.
/// 1 when created, 0 when the id is taken.
const CREATE: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], '0', 'EXAT', ARGV[2])
reindex(ARGV[3], ARGV[4], ARGV[5], ARGV[2], ARGV[6])
return 1
"#;

/// KEYS: record, revision. ARGV: data, exat, id, sub, sid, ttl, base revision.
/// 1 written, 0 another write came first, -1 the session is gone.
const WRITE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[7]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
redis.call('SET', KEYS[2], current + 1, 'EXAT', ARGV[2])
reindex(ARGV[3], ARGV[4], ARGV[5], ARGV[2], ARGV[6])
return 1
"#;

/// KEYS: record, revision. ARGV: id.
const DELETE: &str = r#"
redis.call('DEL', KEYS[1], KEYS[2])
reindex(ARGV[1], '', '', 0, 0)
redis.call('PUBLISH', 'gatehouse:ended', ARGV[1])
return 1
"#;

/// Subscribes to [`ENDED_CHANNEL`] on a connection of its own and wakes the
/// watchers of each session named there. It reconnects by itself; whatever
/// was published while it was away is lost, so after a reconnect (or when
/// this side fell behind) every watcher re-checks the store once.
async fn hear_ends(
    config: RedisConfig,
    watchers: Arc<Watchers>,
    cache: Arc<Cache>,
) -> Result<SubscriberClient, fred::error::Error> {
    let subscriber = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build_subscriber_client()?;
    subscriber.init().await?;
    let mut messages = subscriber.message_rx();
    let mut reconnects = subscriber.reconnect_rx();
    subscriber.subscribe(ENDED_CHANNEL).await?;
    let on_message = watchers.clone();
    tokio::spawn(async move {
        loop {
            match messages.recv().await {
                Ok(message) => {
                    let id = message.value.as_str().and_then(|s| s.parse::<Id>().ok());
                    if let Some(id) = id {
                        // Not needed for correctness (a read checks the
                        // revision), only to free the copy at once.
                        cache.forget(&id);
                        on_message.ended(&id);
                    }
                }
                Err(RecvError::Lagged(_)) => on_message.recheck_all(),
                Err(RecvError::Closed) => break,
            }
        }
    });
    let resubscriber = subscriber.clone();
    tokio::spawn(async move {
        while let Ok(_) | Err(RecvError::Lagged(_)) = reconnects.recv().await {
            if let Err(e) = resubscriber.resubscribe_all().await {
                tracing::warn!(error = %e, "re-subscribing to session ends failed");
            }
            watchers.recheck_all();
        }
    });
    Ok(subscriber)
}

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
        let cache = Arc::new(Cache::default());
        let ends = hear_ends(config, watchers, cache.clone())
            .await
            .map_err(|e| format!("SESSION_STORE={}: cannot subscribe: {e}", redacted(url)))?;
        Ok(Self {
            pool,
            ttl,
            _ends: ends,
            cache,
        })
    }

    async fn script(&self, body: &str, id: &Id, args: Vec<Value>) -> session_store::Result<i64> {
        let script = format!("{REINDEX}{body}");
        self.pool
            .eval(script, vec![id.to_string(), rev_key(id)], args)
            .await
            .map_err(store_error)
    }

    fn args(
        &self,
        record: &Record,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<Vec<Value>> {
        let data =
            rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let (sub, sid) = match owner {
            Some(OwnerEntry { sub, sid }) => (sub, sid.unwrap_or_default()),
            None => (String::new(), String::new()),
        };
        Ok(vec![
            Value::Bytes(Bytes::from(data)),
            Value::from(record.expiry_date.unix_timestamp()),
            Value::from(record.id.to_string()),
            Value::from(sub),
            Value::from(sid),
            Value::from(self.ttl.as_secs() as i64),
        ])
    }

    pub(super) async fn load(
        &self,
        id: &Id,
        now: OffsetDateTime,
    ) -> session_store::Result<Option<Record>> {
        // The revision key lives and dies with the record (same EXAT, same
        // scripts); a session written before revisions existed has none and
        // is read whole below.
        let before = self.cache.before_read();
        let rev: Option<u64> = self.pool.get(rev_key(id)).await.map_err(store_error)?;
        if let Some(record) = rev.and_then(|rev| self.cache.get_at(id, rev, now)) {
            return Ok(Some(record));
        }
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
        let mut record: Record = rmp_serde::from_slice(&data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        if record.expiry_date <= now {
            return Ok(None);
        }
        set_rev(&mut record, rev);
        self.cache.fill(&record, before);
        Ok(Some(record))
    }

    pub(super) async fn create(
        &self,
        record: &mut Record,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<()> {
        loop {
            let args = self.args(record, owner.clone())?;
            if self.script(CREATE, &record.id.clone(), args).await? == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    pub(super) async fn write(
        &self,
        record: &Record,
        base: u64,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<Written> {
        let mut args = self.args(record, owner)?;
        args.push(Value::from(base as i64));
        let written = self.script(WRITE, &record.id, args).await;
        self.cache.forget(&record.id);
        Ok(match written? {
            1 => Written::Yes,
            0 => Written::Conflict,
            _ => Written::Gone,
        })
    }

    pub(super) async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let deleted = self
            .script(DELETE, id, vec![Value::from(id.to_string())])
            .await;
        self.cache.forget(id);
        deleted.map(|_| ())
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
