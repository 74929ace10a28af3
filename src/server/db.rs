//! The app's own data in SQLite (`APP_DATABASE_URL`): the notes behind
//! `/api/notes` and the users the BFF has seen sign in (for `/admin`).
//! Sessions live elsewhere (`SESSION_STORE`); nothing here holds a token.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
    Row, SqlitePool,
};
use time::OffsetDateTime;

use crate::types::{Note, SeenUser};

#[derive(Clone)]
pub struct AppDb(SqlitePool);

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        owner_name TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS notes_owner ON notes (owner)",
    "CREATE TABLE IF NOT EXISTS users_seen (
        sub TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        email TEXT,
        roles TEXT NOT NULL,
        last_login INTEGER NOT NULL)",
];

/// Longest note we store, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

impl AppDb {
    pub async fn open(url: &str) -> Result<Self, String> {
        let fail = |e: &dyn std::fmt::Display| format!("APP_DATABASE_URL={url}: {e}");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| fail(&e))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let memory = url == "sqlite::memory:";
        if !memory {
            if let Some(dir) = Path::new(options.get_filename()).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
                }
            }
        }
        // An in-memory database exists per connection: keep exactly one.
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .connect_with(options)
            .await
            .map_err(|e| fail(&e))?;
        for statement in MIGRATIONS {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(|e| fail(&format!("migration failed: {e}")))?;
        }
        Ok(Self(pool))
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.0).await.map(|_| ())
    }

    /// `owner`'s notes, newest first; every note when `owner` is `None`.
    pub async fn notes(&self, owner: Option<&str>) -> Result<Vec<Note>, sqlx::Error> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query("SELECT * FROM notes WHERE owner = ? ORDER BY id DESC")
                    .bind(owner)
                    .fetch_all(&self.0)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM notes ORDER BY id DESC")
                    .fetch_all(&self.0)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|row| Note {
                id: row.get("id"),
                owner: row.get("owner"),
                owner_name: row.get("owner_name"),
                text: row.get("text"),
                created_at: row.get("created_at"),
            })
            .collect())
    }

    pub async fn add_note(
        &self,
        owner: &str,
        owner_name: &str,
        text: &str,
    ) -> Result<Note, sqlx::Error> {
        let created_at = OffsetDateTime::now_utc().unix_timestamp();
        let id: i64 = sqlx::query(
            "INSERT INTO notes (owner, owner_name, text, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(owner)
        .bind(owner_name)
        .bind(text)
        .bind(created_at)
        .fetch_one(&self.0)
        .await?
        .get("id");
        Ok(Note {
            id,
            owner: owner.to_string(),
            owner_name: owner_name.to_string(),
            text: text.to_string(),
            created_at,
        })
    }

    /// Deletes note `id` if `owner` owns it (any note when `owner` is `None`);
    /// whether a note was deleted.
    pub async fn delete_note(&self, id: i64, owner: Option<&str>) -> Result<bool, sqlx::Error> {
        let done = match owner {
            Some(owner) => {
                sqlx::query("DELETE FROM notes WHERE id = ? AND owner = ?")
                    .bind(id)
                    .bind(owner)
                    .execute(&self.0)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM notes WHERE id = ?")
                    .bind(id)
                    .execute(&self.0)
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// Remembers a user at sign-in (for `/admin`).
    pub async fn saw_user(
        &self,
        sub: &str,
        name: &str,
        email: Option<&str>,
        roles: &[String],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO users_seen (sub, name, email, roles, last_login) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (sub) DO UPDATE SET name = excluded.name, email = excluded.email,
                 roles = excluded.roles, last_login = excluded.last_login",
        )
        .bind(sub)
        .bind(name)
        .bind(email)
        .bind(serde_json::to_string(roles).unwrap_or_else(|_| "[]".into()))
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .execute(&self.0)
        .await
        .map(|_| ())
    }

    /// Every user seen, most recent sign-in first (sessions not filled in).
    pub async fn users_seen(&self) -> Result<Vec<SeenUser>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM users_seen ORDER BY last_login DESC")
            .fetch_all(&self.0)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| SeenUser {
                sub: row.get("sub"),
                name: row.get("name"),
                email: row.get("email"),
                roles: serde_json::from_str(row.get::<&str, _>("roles")).unwrap_or_default(),
                last_login: row.get("last_login"),
                sessions: Vec::new(),
            })
            .collect())
    }
}
