//! SQLite renewals written together: one `UPDATE` for every renewal waiting.
//!
//! When 1,000 sessions come back from an idle minute at once (`make bench`'s
//! SQLite row over 1,000 sessions), each one's first request renews it: a
//! write. One at a time, each write is a round trip to the connection's
//! thread and a commit (0.2–0.35 ms here, the thread waiting for a core
//! that `wrk` and the request workers share), so the renewals queued for
//! 0.35 s and every request waited behind them (p99 13 ms). Written by one
//! task, as many at a time as are waiting (up to [`MAX_BATCH`]), a renewal
//! costs 0.03 ms.
//!
//! Each renewal keeps its compare-and-set: a row is updated only at the
//! revision its request read and while it has not expired, and the
//! statement returns the ids it updated, so each request learns whether its
//! own write landed. Two renewals of one session never share a statement
//! (the second waits for the next one): SQLite would apply one and report
//! the id once, and both would think they had landed.

use std::sync::Arc;

use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot, Mutex};
use tower_sessions::session::Id;

/// Renewals in one statement at most (7 values each; SQLite allows 32,766).
const MAX_BATCH: usize = 64;

/// One renewal: the row's new values and the revision it was read at.
pub(super) struct Renewal {
    pub id: Id,
    pub data: Vec<u8>,
    pub expiry: i64,
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub base: i64,
    /// Rows that expired at or before this instant are not renewed.
    pub now: i64,
}

/// Whether a renewal landed (`false`: another write came first, or the
/// session is gone), or why it could not be written.
type Outcome = Result<bool, String>;

/// Hands renewals to the task that writes them.
#[derive(Clone, Debug)]
pub(super) struct Renewer(mpsc::UnboundedSender<(Renewal, oneshot::Sender<Outcome>)>);

impl Renewer {
    /// Starts the writing task on this runtime; it ends when the last
    /// `Renewer` is dropped. It writes on `pool` while it holds `writing`
    /// (the database's one writer at a time) and calls `forget` for each
    /// session it wrote (or tried to), before its request hears.
    pub(super) fn start(
        pool: SqlitePool,
        writing: Arc<Mutex<()>>,
        forget: impl Fn(&Id) + Send + 'static,
    ) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(write_all(pool, writing, forget, waiting));
        Self(queue)
    }

    /// Writes `renewal` with the others waiting. By the time this returns
    /// (landed or not, or failed), this process' copy of the session is
    /// forgotten. Dropping the future does not stop the write.
    pub(super) async fn renew(&self, renewal: Renewal) -> Outcome {
        let (done, outcome) = oneshot::channel();
        self.0
            .send((renewal, done))
            .map_err(|_| "the renewal writer has stopped".to_string())?;
        outcome
            .await
            .map_err(|_| "the renewal writer stopped while writing".to_string())?
    }
}

async fn write_all(
    pool: SqlitePool,
    writing: Arc<Mutex<()>>,
    forget: impl Fn(&Id),
    mut waiting: mpsc::UnboundedReceiver<(Renewal, oneshot::Sender<Outcome>)>,
) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(first) => first,
            None => match waiting.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(more) = waiting.try_recv() else { break };
            if batch.iter().any(|(r, _)| r.id == more.0.id) {
                // Its session's other renewal must land (or not) first.
                next = Some(more);
                break;
            }
            batch.push(more);
        }
        let sql = statement(batch.len());
        let written = {
            let mut query = sqlx::query(&sql);
            for (r, _) in &batch {
                query = query
                    .bind(r.id.to_string())
                    .bind(r.data.as_slice())
                    .bind(r.expiry)
                    .bind(r.sub.as_deref())
                    .bind(r.sid.as_deref())
                    .bind(r.base)
                    .bind(r.now);
            }
            let _writing = writing.lock().await;
            query.fetch_all(&pool).await
        };
        // Whatever happened (even an error: the write may have landed).
        for (renewal, _) in &batch {
            forget(&renewal.id);
        }
        let landed: Result<Vec<String>, String> = written
            .map(|rows| rows.iter().map(|row| row.get::<String, _>(0)).collect())
            .map_err(|e| e.to_string());
        for (renewal, done) in batch {
            let _ = done.send(match &landed {
                Ok(ids) => Ok(ids.contains(&renewal.id.to_string())),
                Err(e) => Err(e.clone()),
            });
        }
    }
}

/// `UPDATE … FROM (VALUES …)` for `rows` renewals: each row renewed at its
/// base revision if still live, and its id returned. (A statement per batch
/// size, each prepared once and kept by sqlx.)
fn statement(rows: usize) -> String {
    let rows = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "UPDATE gatehouse_sessions SET data = v.column2, expiry_date = v.column3,
             rev = gatehouse_sessions.rev + 1, sub = v.column4, sid = v.column5
         FROM (VALUES {rows}) AS v
         WHERE gatehouse_sessions.id = v.column1 AND gatehouse_sessions.rev = v.column6
             AND gatehouse_sessions.expiry_date > v.column7
         RETURNING id"
    )
}
