//! The SQLite store (`SESSION_STORE=sqlite://…`, the default): one row per
//! session holding the record, its revision and its owner, so a revision
//! check, a write and its index update are one `UPDATE`.
//!
//! The record is encoded as tower-sessions' own SQLite store encodes it
//! (MessagePack of the whole `Record`), and sessions saved by that store
//! (table `tower_sessions`, as Gatehouse used before its writes became
//! compare-and-set) are moved into this table once, at start-up.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
    Row, SqlitePool,
};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store,
};

use super::{set_rev, store_error, Indexer, Owner, OwnerEntry, Written};

#[derive(Clone, Debug)]
pub(super) struct Sqlite {
    pool: SqlitePool,
}

fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))
}

fn decode(bytes: &[u8]) -> session_store::Result<Record> {
    rmp_serde::from_slice(bytes).map_err(|e| session_store::Error::Decode(e.to_string()))
}

fn owner_columns(owner: Option<OwnerEntry>) -> (Option<String>, Option<String>) {
    match owner {
        Some(OwnerEntry { sub, sid }) => (Some(sub), sid),
        None => (None, None),
    }
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
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
        let this = Self { pool };
        this.migrate(indexer)
            .await
            .map_err(|e| format!("SESSION_STORE={url}: migration failed: {e}"))?;
        Ok(this)
    }

    async fn migrate(&self, indexer: Indexer) -> Result<(), sqlx::Error> {
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
                let (sub, sid) = owner_columns(indexer(&record.data));
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
        id: &Id,
        now: OffsetDateTime,
    ) -> session_store::Result<Option<Record>> {
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
        let mut record = decode(&row.get::<Vec<u8>, _>("data"))?;
        set_rev(&mut record, row.get::<i64, _>("rev") as u64);
        Ok(Some(record))
    }

    pub(super) async fn create(
        &self,
        record: &mut Record,
        owner: Option<OwnerEntry>,
    ) -> session_store::Result<()> {
        let (sub, sid) = owner_columns(owner);
        loop {
            let done = sqlx::query(
                "INSERT OR IGNORE INTO gatehouse_sessions (id, data, expiry_date, rev, sub, sid)
                 VALUES (?, ?, ?, 0, ?, ?)",
            )
            .bind(record.id.to_string())
            .bind(encode(record)?)
            .bind(record.expiry_date.unix_timestamp())
            .bind(&sub)
            .bind(&sid)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
            if done.rows_affected() == 1 {
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
        now: OffsetDateTime,
    ) -> session_store::Result<Written> {
        let (sub, sid) = owner_columns(owner);
        let now = now.unix_timestamp();
        let done = sqlx::query(
            "UPDATE gatehouse_sessions SET data = ?, expiry_date = ?, rev = rev + 1, sub = ?, sid = ?
             WHERE id = ? AND rev = ? AND expiry_date > ?",
        )
        .bind(encode(record)?)
        .bind(record.expiry_date.unix_timestamp())
        .bind(sub)
        .bind(sid)
        .bind(record.id.to_string())
        .bind(base as i64)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        if done.rows_affected() == 1 {
            return Ok(Written::Yes);
        }
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM gatehouse_sessions WHERE id = ? AND expiry_date > ?")
                .bind(record.id.to_string())
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

    pub(super) async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM gatehouse_sessions WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
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

    pub(super) async fn delete_expired(&self, now: OffsetDateTime) -> session_store::Result<u64> {
        let done = sqlx::query("DELETE FROM gatehouse_sessions WHERE expiry_date <= ?")
            .bind(now.unix_timestamp())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(done.rows_affected())
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
        let loaded = store.load(&live.id, now).await.unwrap().expect("moved");
        assert_eq!(loaded.data["owner"], "alice");
        assert_eq!(super::super::rev_of(&loaded), 0);
        assert!(store.load(&expired.id, now).await.unwrap().is_none());
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
}
