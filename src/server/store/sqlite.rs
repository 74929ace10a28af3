//! The SQLite store (`SESSION_STORE=sqlite://…`, the default): one row per
//! session holding the record, its revision and its owner, so a revision
//! check, a write and its index update are one `UPDATE`.
//!
//! A database file belongs to one Gatehouse process: the store takes a lock
//! file beside it (`<file>.lock`) and refuses to start when another process
//! holds it, because it keeps the sessions it reads in memory (`cache.rs`)
//! and only its own writes tell it when a copy is stale. Several instances
//! share sessions through Redis or Postgres instead. Stores opened twice on one file
//! in the same process (a restart inside a test) share one cache.
//!
//! The record is encoded as tower-sessions' own SQLite store encodes it
//! (MessagePack of the whole `Record`), and sessions saved by that store
//! (table `tower_sessions`, as Gatehouse used before its writes became
//! compare-and-set) are moved into this table once, at start-up.

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Row, SqlitePool,
};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store,
};

use super::{
    cache::Cache,
    owner_columns,
    renewer::{Renewal, Renewer},
    sealed::{AtRest, Listing, Sealer},
    set_rev, store_error, Indexer, Owner, OwnerEntry, Written, IDLE_STAMP_KEY, REV_KEY,
};

#[derive(Clone, Debug)]
pub(super) struct Sqlite {
    pool: SqlitePool,
    /// Writes renewals: writes that change nothing but a session's idle
    /// stamp ([`IDLE_STAMP_KEY`]) and expiry, as many in one statement as
    /// are waiting (`renewer.rs`), on a connection whose commits do not
    /// wait for the disk (`synchronous=NORMAL`): a renewal costs a WAL
    /// append, not an fsync. Sessions that come back together after an idle
    /// minute (1,000 in `make bench`) renew together, and at an fsync each
    /// (0.5 ms here) that stopped the process for half a second. What this
    /// gives up: at a power loss (not a crash of the process), the last
    /// renewals may roll back, and a session then ends earlier. Every other
    /// write (a sign-in, a sign-out, new tokens, new roles) commits on
    /// `pool`, whose fsync also makes every renewal before it durable: the
    /// WAL is one file, replayed in order, so nothing else can roll back,
    /// and an ended session never comes back.
    renewer: Renewer,
    owned: Arc<Owned>,
    /// Seals each record's bytes at rest (`SESSION_ENCRYPTION_KEY`).
    pub(super) sealer: Arc<Sealer>,
}

/// What this process holds for one database file: the lock file that keeps
/// other processes out, and the sessions read from it.
#[derive(Debug, Default)]
struct Owned {
    cache: Cache,
    /// Held by each write for its statement. SQLite lets one connection
    /// write at a time; another that tries meanwhile is refused (`BUSY`)
    /// and waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15 …
    /// ms between tries instead of being woken when the write before it
    /// ends (`sqliteDefaultBusyCallback`). With 1,000 sessions renewing at
    /// once that was the 9–26 ms tail of `make bench`'s SQLite row over
    /// 1,000 sessions. Queued here, each write starts as the one before it
    /// ends, and SQLite never sees two writers from this process (nor from
    /// another: the lock file keeps them out).
    writing: Arc<tokio::sync::Mutex<()>>,
    /// Held open (and locked) for as long as a store uses the file.
    _lock: Option<File>,
}

/// The database files this process has open, so that two stores on one file
/// share one cache (and one lock).
static OWNED: Mutex<Option<HashMap<PathBuf, Weak<Owned>>>> = Mutex::new(None);

/// Takes the database file at `path` for this process (see the module
/// comment); an in-memory database is private to its connection anyway.
fn own(path: &Path) -> Result<Arc<Owned>, String> {
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(Arc::default());
    }
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut owned = OWNED.lock().expect("open-store list poisoned");
    let owned = owned.get_or_insert_with(HashMap::new);
    owned.retain(|_, weak| weak.strong_count() > 0);
    if let Some(this) = owned.get(&key).and_then(Weak::upgrade) {
        return Ok(this);
    }
    let lock_path = PathBuf::from(format!("{}.lock", key.display()));
    let mut lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another process (pid {holder})")
            };
            return Err(format!(
                "{holder} is using this session store ({} is locked). A SQLite store \
                 belongs to one Gatehouse process; run several instances on Redis or \
                 Postgres (SESSION_STORE=redis://… or postgres://…)",
                lock_path.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", lock_path.display()))
        }
    }
    // Who holds it, for the message above (best effort: the lock is what counts).
    let _ = lock
        .set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| write!(lock, "{}", std::process::id()));
    let this = Arc::new(Owned {
        _lock: Some(lock),
        ..Default::default()
    });
    owned.insert(key, Arc::downgrade(&this));
    Ok(this)
}

fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))
}

fn decode(bytes: &[u8]) -> session_store::Result<Record> {
    rmp_serde::from_slice(bytes).map_err(|e| session_store::Error::Decode(e.to_string()))
}

impl Sqlite {
    pub(super) async fn open(url: &str, indexer: Indexer) -> Result<Self, String> {
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
        let owned = own(options.get_filename()).map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
        let renewals = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
        let this = Self {
            pool,
            renewer: Renewer::start(renewals, owned.writing.clone(), {
                let owned = owned.clone();
                move |id| owned.cache.forget(id)
            }),
            owned,
            sealer: Default::default(),
        };
        this.migrate(indexer)
            .await
            .map_err(|e| format!("SESSION_STORE={url}: migration failed: {e}"))?;
        Ok(this)
    }

    async fn migrate(&self, indexer: Indexer) -> Result<(), sqlx::Error> {
        let _writing = self.owned.writing.lock().await;
        let mut tx = self.pool.begin().await?;
        for statement in [
            "CREATE TABLE IF NOT EXISTS gatehouse_sessions (
                id TEXT PRIMARY KEY NOT NULL,
                data BLOB NOT NULL,
                expiry_date INTEGER NOT NULL,
                rev INTEGER NOT NULL,
                sub TEXT,
                sid TEXT)",
            "CREATE INDEX IF NOT EXISTS gatehouse_sessions_sub ON gatehouse_sessions (sub)",
            "CREATE INDEX IF NOT EXISTS gatehouse_sessions_sid ON gatehouse_sessions (sid)",
            "CREATE INDEX IF NOT EXISTS gatehouse_sessions_expiry ON gatehouse_sessions (expiry_date)",
        ] {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        let old_table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tower_sessions'",
        )
        .fetch_optional(&mut *tx)
        .await?;
        if old_table.is_some() {
            let now = OffsetDateTime::now_utc();
            let rows = sqlx::query("SELECT data FROM tower_sessions")
                .fetch_all(&mut *tx)
                .await?;
            let mut moved = 0;
            for row in rows {
                let Ok(record) = decode(&row.get::<Vec<u8>, _>("data")) else {
                    continue;
                };
                if record.expiry_date <= now {
                    continue;
                }
                let owner = indexer(&record.data);
                let (sub, sid) = owner_columns(&owner);
                sqlx::query(
                    "INSERT OR IGNORE INTO gatehouse_sessions (id, data, expiry_date, rev, sub, sid)
                     VALUES (?, ?, ?, 0, ?, ?)",
                )
                .bind(record.id.to_string())
                .bind(encode(&record).map_err(|e| sqlx::Error::Protocol(e.to_string()))?)
                .bind(record.expiry_date.unix_timestamp())
                .bind(sub)
                .bind(sid)
                .execute(&mut *tx)
                .await?;
                moved += 1;
            }
            sqlx::query("DROP TABLE tower_sessions")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DROP TABLE IF EXISTS gatehouse_session_index")
                .execute(&mut *tx)
                .await?;
            tracing::info!(moved, "sessions moved from the tower_sessions table");
        }
        tx.commit().await
    }

    pub(super) async fn load(
        &self,
        at: &AtRest,
        now: OffsetDateTime,
    ) -> session_store::Result<Option<Arc<Record>>> {
        self.load_then(at, now, async {}).await
    }

    /// [`Self::load`], awaiting `between` after the query and before the
    /// copy read is kept (a test holds a read there while it ends the session).
    async fn load_then(
        &self,
        at: &AtRest,
        now: OffsetDateTime,
        between: impl std::future::Future<Output = ()>,
    ) -> session_store::Result<Option<Arc<Record>>> {
        let id = &at.key;
        if let Some(record) = self.owned.cache.get(id, now) {
            return Ok(Some(record));
        }
        let before = self.owned.cache.before_read();
        let row = sqlx::query(
            "SELECT data, rev FROM gatehouse_sessions WHERE id = ? AND expiry_date > ?",
        )
        .bind(id.to_string())
        .bind(now.unix_timestamp())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored = row.get::<Vec<u8>, _>("data");
        let Some(mut record) = self.sealer.open_record(&stored, at)? else {
            return Ok(None);
        };
        set_rev(&mut record, row.get::<i64, _>("rev") as u64);
        let record = Arc::new(record);
        between.await;
        self.owned.cache.fill(id, &record, before);
        Ok(Some(record))
    }

    /// What can be read of the session filed under `key` without its cookie.
    pub(super) async fn listing(
        &self,
        key: &Id,
        now: OffsetDateTime,
    ) -> session_store::Result<Option<Listing>> {
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT data FROM gatehouse_sessions WHERE id = ? AND expiry_date > ?",
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
        let sealed = self
            .sealer
            .seal_record(record, at, owner.as_ref().map(|o| &o.facts))?;
        let _writing = self.owned.writing.lock().await;
        let done = sqlx::query(
            "INSERT OR IGNORE INTO gatehouse_sessions (id, data, expiry_date, rev, sub, sid)
             VALUES (?, ?, ?, 0, ?, ?)",
        )
        .bind(at.key.to_string())
        .bind(sealed)
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
        let renews = self.only_renews(record, at, base, now);
        let now = now.unix_timestamp();
        let key = at.key.to_string();
        let sealed = self
            .sealer
            .seal_record(record, at, owner.as_ref().map(|o| &o.facts))?;
        let landed = if renews {
            let renewal = Renewal {
                id: at.key,
                data: sealed,
                expiry: record.expiry_date.unix_timestamp(),
                sub: sub.map(str::to_owned),
                sid: sid.map(str::to_owned),
                base: base as i64,
                now,
            };
            // The renewer forgets the cached copy, whatever happened.
            self.renewer.renew(renewal).await.map_err(store_error)?
        } else {
            let writing = self.owned.writing.lock().await;
            let done = sqlx::query(
                "UPDATE gatehouse_sessions SET data = ?, expiry_date = ?, rev = rev + 1, sub = ?, sid = ?
                 WHERE id = ? AND rev = ? AND expiry_date > ?",
            )
            .bind(sealed)
            .bind(record.expiry_date.unix_timestamp())
            .bind(sub)
            .bind(sid)
            .bind(&key)
            .bind(base as i64)
            .bind(now)
            .execute(&self.pool)
            .await;
            drop(writing);
            // Whatever happened (even an error: the write may have landed).
            self.owned.cache.forget(&at.key);
            done.map_err(store_error)?.rows_affected() == 1
        };
        if landed {
            return Ok(Written::Yes);
        }
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM gatehouse_sessions WHERE id = ? AND expiry_date > ?")
                .bind(&key)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(if exists.is_some() {
            Written::Conflict
        } else {
            Written::Gone
        })
    }

    /// Whether `record` is the copy at revision `base` with nothing changed
    /// but its idle stamp (and expiry): a renewal. Only a copy this process
    /// holds at `base` can tell; without one, the write is not a renewal.
    fn only_renews(&self, record: &Record, at: &AtRest, base: u64, now: OffsetDateTime) -> bool {
        let Some(stored) = self.owned.cache.get_at(&at.key, base, now) else {
            return false;
        };
        let kept = |key: &&String| key.as_str() != IDLE_STAMP_KEY && key.as_str() != REV_KEY;
        let count = |data: &HashMap<String, serde_json::Value>| data.keys().filter(kept).count();
        count(&record.data) == count(&stored.data)
            && stored
                .data
                .iter()
                .filter(|(key, _)| kept(key))
                .all(|(key, value)| record.data.get(key) == Some(value))
    }

    pub(super) async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let writing = self.owned.writing.lock().await;
        let done = sqlx::query("DELETE FROM gatehouse_sessions WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await;
        drop(writing);
        self.owned.cache.forget(id);
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
                "SELECT id FROM gatehouse_sessions WHERE sub = ? AND expiry_date > ?",
                sub,
            ),
            Owner::Sid(sid) => (
                "SELECT id FROM gatehouse_sessions WHERE sid = ? AND expiry_date > ?",
                sid,
            ),
        };
        let rows = sqlx::query(sql)
            .bind(value)
            .bind(now.unix_timestamp())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(rows
            .iter()
            .filter_map(|row| row.try_get::<String, _>("id").ok())
            .filter_map(|id| id.parse::<Id>().ok())
            .collect())
    }

    /// How many live sessions are signed in (indexed by a `sub`).
    pub(super) async fn signed_in(&self, now: OffsetDateTime) -> session_store::Result<usize> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM gatehouse_sessions WHERE sub IS NOT NULL AND expiry_date > ?",
        )
        .bind(now.unix_timestamp())
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(count as usize)
    }

    /// Deletes every expired session; how many of them were signed in.
    pub(super) async fn delete_expired(&self, now: OffsetDateTime) -> session_store::Result<usize> {
        let writing = self.owned.writing.lock().await;
        let owners: Result<Vec<Option<String>>, _> = sqlx::query_scalar(
            "DELETE FROM gatehouse_sessions WHERE expiry_date <= ? RETURNING sub",
        )
        .bind(now.unix_timestamp())
        .fetch_all(&self.pool)
        .await;
        drop(writing);
        self.owned.cache.forget_expired(now);
        Ok(owners.map_err(store_error)?.iter().flatten().count())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::Value;

    use super::*;

    fn indexer(data: &HashMap<String, Value>) -> Option<OwnerEntry> {
        data.get("owner")
            .and_then(Value::as_str)
            .map(|sub| OwnerEntry {
                sub: sub.to_string(),
                sid: None,
                facts: Value::Null,
            })
    }

    /// Sessions saved by tower-sessions' own SQLite store (as Gatehouse did
    /// before its writes became compare-and-set) are moved at start-up: they
    /// load, at revision 0, and are indexed by owner; the old table is gone.
    #[tokio::test]
    async fn sessions_of_the_old_table_are_moved_once() {
        let dir = std::env::temp_dir().join(format!("gatehouse-migrate-{}", Id::default()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/sessions.db", dir.display());
        let live = Record {
            id: Id::default(),
            data: HashMap::from([("owner".to_string(), Value::from("alice"))]),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(5),
        };
        let expired = Record {
            id: Id::default(),
            data: HashMap::new(),
            expiry_date: OffsetDateTime::now_utc() - time::Duration::minutes(5),
        };
        {
            let options = SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            sqlx::query(
                "create table tower_sessions (id text primary key not null, data blob not null, expiry_date integer not null)",
            )
            .execute(&pool)
            .await
            .unwrap();
            for record in [&live, &expired] {
                sqlx::query("insert into tower_sessions (id, data, expiry_date) values (?, ?, ?)")
                    .bind(record.id.to_string())
                    .bind(encode(record).unwrap())
                    .bind(record.expiry_date.unix_timestamp())
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
        let store = Sqlite::open(&url, indexer).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let loaded = store
            .load(&AtRest::plain(&live.id), now)
            .await
            .unwrap()
            .expect("moved");
        assert_eq!(loaded.data["owner"], "alice");
        assert_eq!(super::super::rev_of(&loaded), 0);
        assert!(store
            .load(&AtRest::plain(&expired.id), now)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store
                .sessions_of(&Owner::Sub("alice".into()), now)
                .await
                .unwrap(),
            vec![live.id]
        );
        let old: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tower_sessions'",
        )
        .fetch_optional(&store.pool)
        .await
        .unwrap();
        assert!(old.is_none(), "the old table is dropped");
        // Opening again finds nothing more to move.
        Sqlite::open(&url, indexer).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn open_new() -> (Sqlite, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("gatehouse-cache-{}", Id::default()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/sessions.db", dir.display());
        (Sqlite::open(&url, indexer).await.unwrap(), dir)
    }

    /// Only a write that changes nothing but the idle stamp of the copy
    /// this process holds at its base revision is a renewal (committed
    /// without an fsync); it lands like any other write and reads back, and
    /// a stale renewal is refused like any other stale write.
    #[tokio::test]
    async fn only_a_change_of_the_idle_stamp_is_a_renewal() {
        let (store, dir) = open_new().await;
        let now = OffsetDateTime::now_utc();
        let record = Record {
            id: Id::default(),
            data: HashMap::from([
                ("owner".to_string(), Value::from("alice")),
                (IDLE_STAMP_KEY.to_string(), Value::from(1.5)),
            ]),
            expiry_date: now + time::Duration::minutes(5),
        };
        let at = AtRest::plain(&record.id);
        store.create(&record, &at, None).await.unwrap();
        // Not held in this process yet: no copy to compare with.
        let mut renewed = record.clone();
        renewed.data.insert(IDLE_STAMP_KEY.into(), Value::from(2.5));
        renewed.expiry_date += time::Duration::minutes(1);
        assert!(!store.only_renews(&renewed, &at, 0, now));
        let loaded = store.load(&at, now).await.unwrap().expect("stored");
        assert!(store.only_renews(&renewed, &at, 0, now));
        assert!(
            !store.only_renews(&renewed, &at, 1, now),
            "another revision"
        );
        let mut other = renewed.clone();
        other.data.insert("owner".into(), Value::from("mallory"));
        assert!(!store.only_renews(&other, &at, 0, now), "a changed value");
        let mut more = renewed.clone();
        more.data.insert("roles".into(), Value::from("admin"));
        assert!(!store.only_renews(&more, &at, 0, now), "an added value");
        let mut fewer = renewed.clone();
        fewer.data.remove("owner");
        assert!(!store.only_renews(&fewer, &at, 0, now), "a removed value");
        assert_eq!(loaded.data["owner"], "alice");

        let written = store.write(&renewed, &at, 0, None, now).await.unwrap();
        assert_eq!(written, Written::Yes);
        let read = store.load(&at, now).await.unwrap().expect("renewed");
        assert_eq!(read.data[IDLE_STAMP_KEY], Value::from(2.5));
        assert_eq!(super::super::rev_of(&read), 1);
        // The same renewal again, from revision 0: stale, refused.
        let again = store.write(&renewed, &at, 0, None, now).await.unwrap();
        assert_eq!(again, Written::Conflict);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Renewals written together (`renewer.rs`) keep each its own
    /// compare-and-set: of 100 at once, each lands at its revision; of two
    /// of one session from the same revision, one lands; one from a stale
    /// revision, or of a session deleted or expired, does not; and each
    /// row holds exactly what its renewal wrote.
    #[tokio::test]
    async fn renewals_written_together_each_keep_their_compare_and_set() {
        let (store, dir) = open_new().await;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ids: Vec<Id> = (0..100).map(|_| Id::default()).collect();
        for (i, id) in ids.iter().enumerate() {
            sqlx::query(
                "INSERT INTO gatehouse_sessions (id, data, expiry_date, rev) VALUES (?, ?, ?, 0)",
            )
            .bind(id.to_string())
            .bind(vec![0u8])
            // The last session expired a second ago.
            .bind(if i == 99 { now - 1 } else { now + 300 })
            .execute(&store.pool)
            .await
            .unwrap();
        }
        sqlx::query("DELETE FROM gatehouse_sessions WHERE id = ?")
            .bind(ids[98].to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        let renewal = |id: Id, byte: u8, base: i64| Renewal {
            id,
            data: vec![byte; 5000],
            expiry: now + 600,
            sub: Some("alice".into()),
            sid: None,
            base,
            now,
        };
        let mut renewals: Vec<Renewal> = ids.iter().map(|id| renewal(*id, 1, 0)).collect();
        // Session 1 from a stale revision; session 0 twice from revision 0,
        // one after the other (in one batch, but for the rule against it).
        renewals[1].base = 7;
        renewals.insert(1, renewal(ids[0], 2, 0));
        let outcomes =
            futures::future::join_all(renewals.into_iter().map(|r| store.renewer.renew(r))).await;
        let mut landed: Vec<bool> = outcomes.into_iter().map(Result::unwrap).collect();
        let second = landed.remove(1);
        assert!(landed[0] ^ second, "one of session 0's two renewals lands");
        assert!(!landed[1], "a stale revision");
        assert!(
            !landed[98] && !landed[99],
            "a deleted and an expired session"
        );
        assert!(landed[2..98].iter().all(|l| *l));
        for (i, id) in ids.iter().enumerate().take(98) {
            let row = sqlx::query(
                "SELECT data, rev, sub, expiry_date FROM gatehouse_sessions WHERE id = ?",
            )
            .bind(id.to_string())
            .fetch_one(&store.pool)
            .await
            .unwrap();
            let (data, rev) = (row.get::<Vec<u8>, _>(0), row.get::<i64, _>(1));
            match i {
                1 => assert_eq!((data, rev), (vec![0u8], 0), "the stale renewal wrote"),
                0 => {
                    let byte = if landed[0] { 1 } else { 2 };
                    assert_eq!((data, rev), (vec![byte; 5000], 1), "session 0");
                }
                _ => {
                    assert_eq!((data, rev), (vec![1; 5000], 1), "session {i}");
                    assert_eq!(row.get::<String, _>(2), "alice");
                    assert_eq!(row.get::<i64, _>(3), now + 600);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A read holds what it queried while the session is deleted (or
    /// rewritten), then goes on: what it read is returned to its own request,
    /// which started before the change, but never kept for the next one.
    #[tokio::test]
    async fn a_read_that_straddles_a_change_is_not_kept() {
        let (store, dir) = open_new().await;
        let now = OffsetDateTime::now_utc();
        for delete in [true, false] {
            let record = Record {
                id: Id::default(),
                data: HashMap::from([("owner".to_string(), Value::from("alice"))]),
                expiry_date: now + time::Duration::minutes(5),
            };
            store
                .create(&record, &AtRest::plain(&record.id), None)
                .await
                .unwrap();
            let (held, hold) = tokio::sync::oneshot::channel::<()>();
            let (go, release) = tokio::sync::oneshot::channel::<()>();
            let at = AtRest::plain(&record.id);
            let read = store.load_then(&at, now, async {
                held.send(()).unwrap();
                release.await.unwrap();
            });
            let change = async {
                hold.await.unwrap();
                if delete {
                    store.delete(&record.id).await.unwrap();
                } else {
                    let written = store
                        .write(&record, &AtRest::plain(&record.id), 0, None, now)
                        .await
                        .unwrap();
                    assert_eq!(written, Written::Yes);
                }
                go.send(()).unwrap();
            };
            let (read, ()) = tokio::join!(read, change);
            assert!(
                read.unwrap().is_some(),
                "the read saw the session before the change"
            );
            let after = store.load(&AtRest::plain(&record.id), now).await.unwrap();
            if delete {
                assert!(
                    after.is_none(),
                    "the deleted session came back from the cache"
                );
            } else {
                assert_eq!(
                    super::super::rev_of(&after.unwrap()),
                    1,
                    "the cache served the revision before the write"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two stores on one file in this process (a restart inside a test)
    /// share the cache, so a change through one is seen by the other.
    #[tokio::test]
    async fn two_stores_on_one_file_in_one_process_share_what_they_keep() {
        let (first, dir) = open_new().await;
        let url = format!("sqlite://{}/sessions.db", dir.display());
        let second = Sqlite::open(&url, indexer).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let record = Record {
            id: Id::default(),
            data: HashMap::new(),
            expiry_date: now + time::Duration::minutes(5),
        };
        first
            .create(&record, &AtRest::plain(&record.id), None)
            .await
            .unwrap();
        assert!(first
            .load(&AtRest::plain(&record.id), now)
            .await
            .unwrap()
            .is_some());
        second.delete(&record.id).await.unwrap();
        assert!(first
            .load(&AtRest::plain(&record.id), now)
            .await
            .unwrap()
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
