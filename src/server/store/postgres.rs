//! The Postgres store (`SESSION_STORE=postgres://…`), shared by every
//! instance like Redis, durable like SQLite.
//!
//! - **One row per session** (`gatehouse_sessions`): the record (sealed as
//!   on every store, `sealed.rs`), its revision and its owner's `sub`/`sid`,
//!   so a revision check, a write and its index update are one `UPDATE`.
//! - **Every read asks Postgres**, in one round trip, for the revision and
//!   the record, and for the record's bytes only when this instance does
//!   not keep a copy at that revision (`cache.rs`). A copy is never served
//!   without Postgres saying it is current, so a sign-out or a refresh on
//!   another instance is effective here as soon as it commits: no lease and
//!   no acknowledgements are needed (what Redis needs them for, `lease.rs`,
//!   is serving copies without asking).
//! - **Ends are announced** with `NOTIFY gatehouse_ended, '<key>'` in the
//!   statement that deletes the row; every instance `LISTEN`s and wakes
//!   the `/auth/events` streams it holds for that session. After the
//!   listening connection breaks, what was announced meanwhile is lost, so
//!   every stream re-checks its session once.
//! - **Refresh locks** are session-level advisory locks
//!   (`pg_try_advisory_lock`) on a connection taken from the pool for as
//!   long as the lock is held: an instance that dies releases its locks
//!   with its connections, so no TTL is needed (`lock.rs`).
//! - **The replay cache** (`jti`s of logout tokens and DPoP proofs) is a
//!   table, and "first use" is one `INSERT … ON CONFLICT`, so two instances
//!   cannot both see a `jti` as new.
//! - Expired rows are deleted by every instance's sweeper (idempotent).

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    PgPool, Row,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use tower_sessions::{
    session::{Id, Record},
    session_store,
};

use super::{
    cache::Cache,
    ended::Watchers,
    owner_columns, rev_of,
    sealed::{AtRest, Listing, Sealer},
    set_rev, store_error, Owner, OwnerEntry, Written,
};

/// The channel an ended session's store key is announced on.
const ENDED_CHANNEL: &str = "gatehouse_ended";

/// Serialises schema creation between instances starting at once (two
/// concurrent `CREATE TABLE IF NOT EXISTS` can fail on Postgres). Any
/// constant will do; this one spells "gatehous" in ASCII.
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS gatehouse_sessions (
        id TEXT PRIMARY KEY NOT NULL,
        data BYTEA NOT NULL,
        expiry_date BIGINT NOT NULL,
        rev BIGINT NOT NULL,
        sub TEXT,
        sid TEXT)",
    "CREATE INDEX IF NOT EXISTS gatehouse_sessions_sub ON gatehouse_sessions (sub)",
    "CREATE INDEX IF NOT EXISTS gatehouse_sessions_sid ON gatehouse_sessions (sid)",
    "CREATE INDEX IF NOT EXISTS gatehouse_sessions_expiry ON gatehouse_sessions (expiry_date)",
    "CREATE TABLE IF NOT EXISTS gatehouse_jtis (
        key TEXT PRIMARY KEY NOT NULL,
        until BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS gatehouse_jtis_until ON gatehouse_jtis (until)",
];

#[derive(Clone, Debug)]
pub(super) struct Postgres {
    pub(super) pool: PgPool,
    /// The sessions this instance read (served only at the revision
    /// Postgres holds).
    cache: Arc<Cache>,
    /// Stops the listener when the last copy of the store is dropped.
    _listening: Arc<watch::Sender<()>>,
    /// Seals each record's bytes at rest.
    pub(super) sealer: Arc<Sealer>,
}

/// The advisory-lock key of a lock name: 64 bits of its SHA-256. Two names
/// sharing a key only make one wait for the other.
pub(super) fn lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("gatehouse:lock:{name}"));
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl Postgres {
    pub(super) async fn open(url: &url::Url, watchers: Arc<Watchers>) -> Result<Self, String> {
        let named = redacted(url);
        let options = PgConnectOptions::from_str(url.as_str())
            .map_err(|e| format!("SESSION_STORE={named}: {e}"))?
            .application_name("gatehouse");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| format!("SESSION_STORE={named}: cannot connect: {e}"))?;
        migrate(&pool)
            .await
            .map_err(|e| format!("SESSION_STORE={named}: migration failed: {e}"))?;
        let cache = Arc::new(Cache::default());
        let (stop, listening) = watch::channel(());
        listen(pool.clone(), cache.clone(), watchers, listening)
            .await
            .map_err(|e| format!("SESSION_STORE={named}: cannot listen: {e}"))?;
        Ok(Self {
            pool,
            cache,
            _listening: Arc::new(stop),
            sealer: Default::default(),
        })
    }

    pub(super) async fn load(
        &self,
        at: &AtRest,
        now: OffsetDateTime,
    ) -> session_store::Result<Option<Arc<Record>>> {
        let id = &at.key;
        let kept = self.cache.get(id, now);
        // -1: no copy, send the bytes whatever the revision.
        let kept_rev = kept.as_ref().map_or(-1, |r| rev_of(r) as i64);
        let before = self.cache.before_read();
        let row = sqlx::query(
            "SELECT rev, expiry_date, CASE WHEN rev = $3 THEN NULL ELSE data END AS data
             FROM gatehouse_sessions WHERE id = $1 AND expiry_date > $2",
        )
        .bind(id.to_string())
        .bind(now.unix_timestamp())
        .bind(kept_rev)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let rev = row.get::<i64, _>("rev");
        let expiry = row.get::<i64, _>("expiry_date");
        match (row.get::<Option<Vec<u8>>, _>("data"), kept) {
            // Postgres holds the revision this instance keeps (and a
            // recreated row with the same key would differ in expiry).
            (None, Some(kept)) if kept.expiry_date.unix_timestamp() == expiry => Ok(Some(kept)),
            (None, _) => {
                // The copy was replaced between the two looks: read whole.
                self.cache.forget(id);
                Box::pin(self.load(at, now)).await
            }
            (Some(stored), _) => {
                let Some(mut record) = self.sealer.open_record(&stored, at)? else {
                    return Ok(None);
                };
                set_rev(&mut record, rev as u64);
                let record = Arc::new(record);
                self.cache.fill(id, &record, before);
                Ok(Some(record))
            }
        }
    }

    /// What can be read of the session filed under `key` without its cookie.
    pub(super) async fn listing(
        &self,
        key: &Id,
        now: OffsetDateTime,
    ) -> session_store::Result<Option<Listing>> {
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT data FROM gatehouse_sessions WHERE id = $1 AND expiry_date > $2",
        )
        .bind(key.to_string())
        .bind(now.unix_timestamp())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(stored.and_then(|stored| self.sealer.open_listing(&stored, key)))
    }

    /// Stores a new session at `at`; `false` when its key is taken.
    pub(super) async fn create(
        &self,
        record: &Record,
        at: &AtRest,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<bool> {
        let (sub, sid) = owner_columns(&owner);
        let done = sqlx::query(
            "INSERT INTO gatehouse_sessions (id, data, expiry_date, rev, sub, sid)
             VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(at.key.to_string())
        .bind(
            self.sealer
                .seal_record(record, at, owner.as_ref().map(|o| &o.facts))?,
        )
        .bind(record.expiry_date.unix_timestamp())
        .bind(sub)
        .bind(sid)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn write(
        &self,
        record: &Record,
        at: &AtRest,
        base: u64,
        owner: Option<OwnerEntry>,
        now: OffsetDateTime,
    ) -> session_store::Result<Written> {
        let (sub, sid) = owner_columns(&owner);
        let sealed = self
            .sealer
            .seal_record(record, at, owner.as_ref().map(|o| &o.facts))?;
        // One statement: the write if the revision is still `base`, and
        // whether the session still exists at all (for Conflict vs Gone).
        let row = sqlx::query(
            "WITH written AS (
                UPDATE gatehouse_sessions
                SET data = $1, expiry_date = $2, rev = rev + 1, sub = $3, sid = $4
                WHERE id = $5 AND rev = $6 AND expiry_date > $7
                RETURNING 1)
             SELECT (SELECT COUNT(*) FROM written) AS written,
                    EXISTS (SELECT 1 FROM gatehouse_sessions
                            WHERE id = $5 AND expiry_date > $7) AS present",
        )
        .bind(sealed)
        .bind(record.expiry_date.unix_timestamp())
        .bind(sub)
        .bind(sid)
        .bind(at.key.to_string())
        .bind(base as i64)
        .bind(now.unix_timestamp())
        .fetch_one(&self.pool)
        .await;
        // Whatever happened (even an error: the write may have landed).
        self.cache.forget(&at.key);
        let row = row.map_err(store_error)?;
        Ok(if row.get::<i64, _>("written") == 1 {
            Written::Yes
        } else if row.get::<bool, _>("present") {
            Written::Conflict
        } else {
            Written::Gone
        })
    }

    /// Deletes the session filed under `key` and announces its end to every
    /// instance (the notification is sent when the delete commits).
    pub(super) async fn delete(&self, key: &Id) -> session_store::Result<()> {
        let done = sqlx::query(
            "WITH gone AS (DELETE FROM gatehouse_sessions WHERE id = $1 RETURNING id)
             SELECT pg_notify($2, $1)",
        )
        .bind(key.to_string())
        .bind(ENDED_CHANNEL)
        .execute(&self.pool)
        .await;
        self.cache.forget(key);
        done.map_err(store_error)?;
        Ok(())
    }

    pub(super) async fn sessions_of(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> session_store::Result<Vec<Id>> {
        let (sql, value) = match owner {
            Owner::Sub(sub) => (
                "SELECT id FROM gatehouse_sessions WHERE sub = $1 AND expiry_date > $2",
                sub,
            ),
            Owner::Sid(sid) => (
                "SELECT id FROM gatehouse_sessions WHERE sid = $1 AND expiry_date > $2",
                sid,
            ),
        };
        let ids: Vec<String> = sqlx::query_scalar(sql)
            .bind(value)
            .bind(now.unix_timestamp())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(ids.iter().filter_map(|id| id.parse::<Id>().ok()).collect())
    }

    /// How many live sessions are signed in (indexed by a `sub`).
    pub(super) async fn signed_in(&self, now: OffsetDateTime) -> session_store::Result<usize> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM gatehouse_sessions WHERE sub IS NOT NULL AND expiry_date > $1",
        )
        .bind(now.unix_timestamp())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(count as usize)
    }

    /// Deletes every expired session and replay-cache entry; how many of the
    /// sessions were signed in.
    pub(super) async fn delete_expired(&self, now: OffsetDateTime) -> session_store::Result<usize> {
        let now = now.unix_timestamp();
        let owners: Vec<Option<String>> = sqlx::query_scalar(
            "DELETE FROM gatehouse_sessions WHERE expiry_date <= $1 RETURNING sub",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        sqlx::query("DELETE FROM gatehouse_jtis WHERE until <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(owners.iter().flatten().count())
    }

    /// Whether `key` is in the replay cache and not yet expired at `now`.
    pub(super) async fn jti_seen(&self, key: &str, now: i64) -> session_store::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM gatehouse_jtis WHERE key = $1 AND until > $2)",
        )
        .bind(key)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)
    }

    /// Keeps `key` in the replay cache until `until` (never shortened).
    pub(super) async fn burn_jti(&self, key: &str, until: i64) -> session_store::Result<()> {
        sqlx::query(
            "INSERT INTO gatehouse_jtis (key, until) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET until = GREATEST(gatehouse_jtis.until, EXCLUDED.until)",
        )
        .bind(key)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    /// Keeps `key` until `until` if it is not already kept (an expired
    /// entry counts as free); whether it was free. One statement, so two
    /// instances cannot both find it free.
    pub(super) async fn first_use(
        &self,
        key: &str,
        until: i64,
        now: i64,
    ) -> session_store::Result<bool> {
        let row = sqlx::query(
            "INSERT INTO gatehouse_jtis (key, until) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until
             WHERE gatehouse_jtis.until <= $3
             RETURNING 1",
        )
        .bind(key)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(row.is_some())
    }
}

async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    for statement in MIGRATIONS {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Listens for ended sessions (failing if it cannot start now), then keeps
/// listening in the background until `stop`'s sender is dropped with the
/// store. After any break a new connection is made and subscribed; whatever
/// was announced while none listened is lost, so then everything kept is
/// forgotten and every stream re-checks its session (after the new `LISTEN`:
/// an end that lands during the re-check is then heard).
async fn listen(
    pool: PgPool,
    cache: Arc<Cache>,
    watchers: Arc<Watchers>,
    mut stop: watch::Receiver<()>,
) -> Result<(), sqlx::Error> {
    async fn subscribed(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(ENDED_CHANNEL).await?;
        Ok(listener)
    }
    let first = subscribed(&pool).await?;
    tokio::spawn(async move {
        let mut listener = Some(first);
        let mut pause = Duration::from_millis(100);
        loop {
            if let Some(mut current) = listener.take() {
                loop {
                    let heard = tokio::select! {
                        heard = current.try_recv() => heard,
                        _ = stop.changed() => return,
                    };
                    // `None`: the connection broke.
                    let Ok(Some(notification)) = heard else { break };
                    if let Ok(key) = notification.payload().parse::<Id>() {
                        cache.forget(&key);
                        watchers.ended(&key);
                    }
                }
                pause = Duration::from_millis(100);
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
            match subscribed(&pool).await {
                Ok(fresh) => {
                    cache.forget_all();
                    watchers.recheck_all();
                    listener = Some(fresh);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Postgres session listener lost; retrying");
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    Ok(())
}

/// The URL without its password, for messages and logs.
fn redacted(url: &url::Url) -> String {
    crate::server::config::without_password(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_name_and_are_stable() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("a"), lock_key("b"));
    }
}
