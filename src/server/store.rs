//! The session store chosen by `SESSION_STORE`: the maintained tower-sessions
//! stores behind one type, plus an index of signed-in sessions by `sub` and
//! `sid`. The index is kept by the store itself (every save and delete updates
//! it), so back-channel logout and session lists can find a user's sessions in
//! every store without scanning.

use std::{
    collections::HashMap,
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
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
}

#[derive(Clone, Debug)]
enum Index {
    Memory(Arc<Mutex<HashMap<Id, Entry>>>),
    Sqlite(SqlitePool),
}

#[derive(Clone, Debug)]
pub struct AnyStore {
    backend: Backend,
    index: Index,
}

fn store_error(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

impl AnyStore {
    /// Opens (and for SQLite, creates and migrates) the configured store.
    pub async fn open(url: &StoreUrl) -> Result<Self, String> {
        match url {
            StoreUrl::Memory => Ok(Self {
                backend: Backend::Memory(MemoryStore::default()),
                index: Index::Memory(Default::default()),
            }),
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
                Ok(Self {
                    backend: Backend::Sqlite(store),
                    index: Index::Sqlite(pool),
                })
            }
            StoreUrl::Redis(_) => Err(
                "SESSION_STORE=redis://… is not available in this build yet; use sqlite://PATH or memory".into(),
            ),
        }
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
        }
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
        }
        self.index_record(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match &self.backend {
            Backend::Memory(s) => s.save(record).await?,
            Backend::Sqlite(s) => s.save(record).await?,
        }
        self.index_record(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match &self.backend {
            Backend::Memory(s) => s.load(id).await,
            Backend::Sqlite(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match &self.backend {
            Backend::Memory(s) => s.delete(id).await?,
            Backend::Sqlite(s) => s.delete(id).await?,
        }
        self.unindex(id).await
    }
}
