//! The signed-in user's own sessions: list them, end one, end all others.
//! The browser names a session by its random `handle`, never by its id.

use super::state::AuthState;
use crate::server::telemetry::metrics;

use tower_sessions::session::Id;

use super::revoke::revoke_in_background;
use super::session::{record_from_data, SessionError, SessionFacts, SessionRecord};
use super::user::CurrentUser;
use crate::{
    server::store::{Listed, Owner},
    types::SessionSummary,
};

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
/// with that session id. Built from what the store lists of each session
/// ([`SessionFacts`]), which it can read without their cookies.
pub async fn summaries_of(
    state: &AuthState,
    sub: &str,
    current: Option<&str>,
) -> Result<Vec<SessionSummary>, SessionError> {
    let idle = state.config.session.idle_timeout;
    let current = current_key(state, current);
    let mut list: Vec<SessionSummary> = listed_of(state, sub)
        .await?
        .into_iter()
        .map(|(listed, facts)| {
            let created_at = facts.created_at;
            let last_active = (listed.expiry_date - idle)
                .min(state.clock.now())
                .unix_timestamp()
                .max(created_at);
            SessionSummary {
                handle: facts.handle,
                created_at,
                last_active,
                browser: describe(facts.user_agent.as_deref()),
                ip: facts.ip,
                current: current == Some(listed.key),
            }
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
    let current = current_key(state, session.id().as_deref());
    let mut ended = Vec::new();
    let mut count = 0;
    for (listed, facts) in listed_of(state, me.subject_key().as_str()).await? {
        let is_current = current == Some(listed.key);
        let chosen = match which {
            Which::Handle(h) => !h.is_empty() && facts.handle == h,
            Which::AllOthers => !is_current,
        };
        if !chosen {
            continue;
        }
        if is_current {
            session.sign_out().await?;
            ended.push(SessionRecord::clone(me));
        } else {
            state
                .store
                .end_listed(&listed.key)
                .await
                .map_err(tower_sessions::session::Error::Store)?;
            // Readable only when records are not sealed with their own
            // cookie's key: then its refresh token is revoked too.
            ended.extend(listed.record.and_then(|r| record_from_data(&r.data)));
        }
        count += 1;
    }
    tracing::info!(sub = %me.sub, ended = count, "sessions ended by their user");
    metrics::sessions_ended("user", count);
    revoke_in_background(state, ended);
    Ok(count)
}

/// The store key of the session with cookie id `id`.
fn current_key(state: &AuthState, id: Option<&str>) -> Option<Id> {
    let id = id?.parse::<Id>().ok()?;
    Some(state.store.key_of(&id))
}

/// The live sessions of `sub` with what they are listed by.
async fn listed_of(
    state: &AuthState,
    sub: &str,
) -> Result<Vec<(Listed, SessionFacts)>, SessionError> {
    let listed = state
        .store
        .listed_of(&Owner::Sub(sub.to_string()))
        .await
        .map_err(tower_sessions::session::Error::Store)?;
    Ok(listed
        .into_iter()
        .filter_map(|listed| {
            let facts = serde_json::from_value(listed.facts.clone()).ok()?;
            Some((listed, facts))
        })
        .collect())
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
