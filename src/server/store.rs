//! The session store chosen by `SESSION_STORE`: one enum over the maintained
//! tower-sessions stores, so the rest of the app has a single concrete type.

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, ExpiredDeletion},
    MemoryStore, SessionStore,
};
use tower_sessions_sqlx_store::SqliteStore;

use super::config::StoreUrl;

#[derive(Clone, Debug)]
pub enum AnyStore {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
}

impl AnyStore {
    /// Opens (and for SQLite, creates and migrates) the configured store.
    pub async fn open(url: &StoreUrl) -> Result<Self, String> {
        match url {
            StoreUrl::Memory => Ok(Self::Memory(MemoryStore::default())),
            StoreUrl::Sqlite(url) => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| format!("SESSION_STORE={url}: {e}"))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5));
                if let Some(dir) = Path::new(options.get_filename()).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| format!("SESSION_STORE={url}: cannot create {}: {e}", dir.display()))?;
                    }
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(8)
                    .connect_with(options)
                    .await
                    .map_err(|e| format!("SESSION_STORE={url}: {e}"))?;
                let store = SqliteStore::new(pool);
                store
                    .migrate()
                    .await
                    .map_err(|e| format!("SESSION_STORE={url}: migration failed: {e}"))?;
                Ok(Self::Sqlite(store))
            }
            StoreUrl::Redis(_) => Err(
                "SESSION_STORE=redis://… is not available in this build yet; use sqlite://PATH or memory".into(),
            ),
        }
    }

    /// Removes expired sessions in the background (the memory store drops them on load).
    pub fn spawn_expiry_sweeper(&self) {
        if let Self::Sqlite(store) = self {
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) = store
                    .continuously_delete_expired(Duration::from_secs(60))
                    .await
                {
                    tracing::error!(error = %e, "expired-session sweeper stopped");
                }
            });
        }
    }

    /// For `/readyz`: can the store answer right now?
    pub async fn ping(&self) -> Result<(), String> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Sqlite(store) => store
                .load(&Id::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

#[async_trait]
impl SessionStore for AnyStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::Memory(s) => s.create(record).await,
            Self::Sqlite(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::Memory(s) => s.save(record).await,
            Self::Sqlite(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::Memory(s) => s.load(id).await,
            Self::Sqlite(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::Memory(s) => s.delete(id).await,
            Self::Sqlite(s) => s.delete(id).await,
        }
    }
}
