//! The signed-in user's own sessions: list them, end one, end all others.
//! The browser names a session by its random `handle`, never by its id.

use super::state::AuthState;

use super::revoke::revoke_in_background;
use super::session::{record_from_data, SessionError};
use super::user::CurrentUser;
use crate::{server::store::Owner, types::SessionSummary};

/// Which of the user's sessions to end.
pub enum Which<'a> {
    Handle(&'a str),
    AllOthers,
}

/// The signed-in user's live sessions, newest first.
pub async fn list(
    state: &AuthState,
    user: &CurrentUser,
) -> Result<Vec<SessionSummary>, SessionError> {
    summaries_of(
        state,
        user.record.subject_key().as_str(),
        user.session.id().as_deref(),
    )
    .await
}

/// The live sessions of the user with subject key `sub`
/// (`SessionRecord::subject_key`), newest first; `current` marks the one
/// with that session id.
pub async fn summaries_of(
    state: &AuthState,
    sub: &str,
    current: Option<&str>,
) -> Result<Vec<SessionSummary>, SessionError> {
    let idle = state.config.session.idle_timeout;
    let stored = state
        .store
        .records_of(&Owner::Sub(sub.to_string()))
        .await
        .map_err(tower_sessions::session::Error::Store)?;
    let mut list: Vec<SessionSummary> = stored
        .iter()
        .filter_map(|stored| {
            let record = record_from_data(&stored.data)?;
            let last_active = (stored.expiry_date - idle)
                .max(record.created_at)
                .min(state.clock.now());
            Some(SessionSummary {
                handle: record.handle.clone(),
                created_at: record.created_at.unix_timestamp(),
                last_active: last_active.unix_timestamp(),
                browser: describe(record.user_agent.as_deref()),
                ip: record.ip.clone(),
                current: current == Some(stored.id.to_string().as_str()),
            })
        })
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(list)
}

/// Ends the chosen sessions of the signed-in user (never anyone else's);
/// how many ended.
pub async fn end(
    state: &AuthState,
    user: &CurrentUser,
    which: Which<'_>,
) -> Result<usize, SessionError> {
    let (me, session) = (&user.record, &user.session);
    let current = session.id();
    let stored = state
        .store
        .records_of(&Owner::Sub(me.subject_key().into_string()))
        .await
        .map_err(tower_sessions::session::Error::Store)?;
    let mut ended = Vec::new();
    for stored in stored {
        let Some(record) = record_from_data(&stored.data) else {
            continue;
        };
        let is_current = current.as_deref() == Some(stored.id.to_string().as_str());
        let chosen = match which {
            Which::Handle(h) => !h.is_empty() && record.handle == h,
            Which::AllOthers => !is_current,
        };
        if !chosen {
            continue;
        }
        if is_current {
            session.sign_out().await?;
        } else {
            use tower_sessions::SessionStore;
            state
                .store
                .delete(&stored.id)
                .await
                .map_err(tower_sessions::session::Error::Store)?;
        }
        ended.push(record);
    }
    let count = ended.len();
    tracing::info!(sub = %me.sub, ended = count, "sessions ended by their user");
    revoke_in_background(state, ended);
    Ok(count)
}

/// "Firefox on Linux" from a User-Agent, good enough to recognise a device.
fn describe(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else {
        return "Unknown browser".into();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        _ => ua.chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn user_agents_are_described() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36";
        assert_eq!(describe(Some(chrome)), "Chrome on Linux");
        assert_eq!(
            describe(Some(
                "Mozilla/5.0 (Windows NT 10.0; rv:140.0) Gecko/20100101 Firefox/140.0"
            )),
            "Firefox on Windows"
        );
        assert_eq!(describe(Some("curl/8.5.0")), "curl");
        assert_eq!(describe(None), "Unknown browser");
    }
}
