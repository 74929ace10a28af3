//! What the browser may see of a signed-in session: its deadlines
//! ([`SessionTimes`]) and the user ([`UserView`]), built from the record
//! (and kept with its JSON per record and idle deadline).

use std::sync::Arc;

use time::OffsetDateTime;

use super::{record::SessionRecord, AuthSession};
use crate::{
    auth::state::AuthState,
    types::{ClaimRow, SessionTimes, SignedInUser, UserView},
};

impl AuthSession {
    /// The session's deadlines: idle as the store holds it, absolute from the record.
    pub fn times(
        &self,
        record: &SessionRecord,
        idle_deadline: OffsetDateTime,
        idle_timeout: time::Duration,
    ) -> SessionTimes {
        SessionTimes {
            idle_timeout: idle_timeout.whole_seconds(),
            created_at: record.created_at.unix_timestamp(),
            idle_expires_at: idle_deadline
                .min(record.absolute_expires_at)
                .unix_timestamp(),
            absolute_expires_at: record.absolute_expires_at.unix_timestamp(),
            access_token_expires_at: record
                .tokens
                .access_token_expires_at
                .map(OffsetDateTime::unix_timestamp),
        }
    }

    pub fn view(
        &self,
        record: &SessionRecord,
        idle_deadline: OffsetDateTime,
        idle_timeout: time::Duration,
    ) -> UserView {
        UserView {
            sub: record.sub.clone(),
            name: record.name.clone(),
            preferred_username: record.preferred_username.clone(),
            email: record.email.clone(),
            email_verified: record.email_verified,
            picture: record.picture.clone(),
            roles: record.roles.clone(),
            session: self.times(record, idle_deadline, idle_timeout),
            id_token_claims: ClaimRow::rows(&record.id_token_claims),
        }
    }

    /// The signed-in user of `record` at `idle_deadline`, with the view's
    /// JSON: made once per record and deadline (`DecodedRecords`), so that
    /// `GET /auth/user` and the `current_user` server function answer a
    /// read of an unchanged session without serializing it again.
    pub fn user(
        &self,
        state: &AuthState,
        record: &Arc<SessionRecord>,
        idle_deadline: OffsetDateTime,
    ) -> SignedInUser {
        let make = || self.view(record, idle_deadline, state.config.session.idle_timeout);
        match self.store_id() {
            Some(id) => state.decoded.user(id, record, idle_deadline, make),
            None => SignedInUser::with_json(make()),
        }
    }

    /// The signed-in user, or `None` (also when the store fails: failing
    /// closed means treating the request as anonymous).
    pub async fn signed_in_user(&self, state: &AuthState) -> Option<SignedInUser> {
        match self.signed_in(state).await {
            Ok(found) => found.map(|(record, deadline)| self.user(state, &record, deadline)),
            Err(e) => {
                tracing::error!(error = %e, "session store unavailable; treating request as anonymous");
                None
            }
        }
    }
}
