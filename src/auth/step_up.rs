//! Step-up authentication: how recent, and of which class, a session's
//! sign-in must be for a guarded action (OpenID Connect `max_age` and
//! `acr_values`, OIDC Core §3.1.2.1; RFC 9470 for the API's answer).
//!
//! A guard compares the session's `auth_time` and `acr` (kept from the ID
//! token at sign-in, see `SessionRecord`) with an [`AuthRequirement`]; an
//! unmet requirement is 401 `insufficient_user_authentication` naming what a
//! new sign-in must meet. The browser then signs in again through
//! `/auth/login?max_age=…&acr_values=…`, whose callback checks that the IdP
//! did meet it (see `flow.rs`) and that the same user signed in.

use time::OffsetDateTime;

use super::{api_error::ApiError, session::SessionRecord};
use crate::server::config::AuthRequirement;

/// `None` when `record`'s sign-in meets `requirement` at `now`; otherwise
/// the 401 that names what a new sign-in must meet. A session without an
/// `auth_time` (the IdP sent none) never meets a `max_age`: fail closed.
pub fn unmet(
    requirement: &AuthRequirement,
    record: &SessionRecord,
    now: OffsetDateTime,
) -> Option<ApiError> {
    let recent = requirement
        .max_age
        .is_none_or(|max_age| record.auth_time.is_some_and(|at| now - at <= max_age));
    let class = requirement.acr_values.is_empty()
        || record
            .acr
            .as_ref()
            .is_some_and(|acr| requirement.acr_values.contains(acr));
    if recent && class {
        return None;
    }
    tracing::info!(
        sub = %record.sub,
        recent,
        class,
        "step-up needed: the sign-in is too old or of another class"
    );
    Some(challenge(requirement))
}

/// The 401 that asks for a sign-in meeting `requirement`.
pub fn challenge(requirement: &AuthRequirement) -> ApiError {
    ApiError::StepUpRequired {
        max_age: requirement.max_age.map(|d| d.whole_seconds().max(0) as u64),
        acr_values: (!requirement.acr_values.is_empty()).then(|| requirement.acr_values.join(" ")),
    }
}

/// Whether an ID token's `auth_time` meets the `max_age` that was sent, on
/// the IdP's own clock (`iat` minus `auth_time`), allowing `LEEWAY` for the
/// time the login took between the two.
pub fn within_max_age(max_age: u64, auth_time: i64, issued_at: i64) -> bool {
    issued_at - auth_time <= max_age as i64 + LEEWAY_SECS
}

/// How much older than `max_age` an authentication may look when the ID
/// token is issued: the seconds between the IdP checking `max_age` and
/// issuing the token (the code exchange).
const LEEWAY_SECS: i64 = 60;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::session::sample_record;
    use time::Duration;

    fn requirement(max_age: Option<i64>, acr: &[&str]) -> AuthRequirement {
        AuthRequirement {
            max_age: max_age.map(Duration::seconds),
            acr_values: acr.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_sign_in_meets_a_max_age_while_it_is_recent_enough() {
        let now = OffsetDateTime::from_unix_timestamp(10_000).unwrap();
        let mut record = sample_record();
        record.auth_time = Some(now - Duration::seconds(600));
        assert_eq!(unmet(&requirement(Some(600), &[]), &record, now), None);
        assert_eq!(
            unmet(&requirement(Some(599), &[]), &record, now),
            Some(ApiError::StepUpRequired {
                max_age: Some(599),
                acr_values: None
            })
        );
        // No auth_time from the IdP: never recent enough.
        record.auth_time = None;
        assert!(unmet(&requirement(Some(600), &[]), &record, now).is_some());
        // No requirement: any sign-in.
        assert_eq!(unmet(&requirement(None, &[]), &record, now), None);
    }

    #[test]
    fn a_sign_in_meets_acr_values_only_with_one_of_them() {
        let now = OffsetDateTime::from_unix_timestamp(10_000).unwrap();
        let mut record = sample_record();
        let mfa = requirement(None, &["urn:mfa", "urn:hwk"]);
        assert_eq!(
            unmet(&mfa, &record, now),
            Some(ApiError::StepUpRequired {
                max_age: None,
                acr_values: Some("urn:mfa urn:hwk".into())
            })
        );
        record.acr = Some("urn:pwd".into());
        assert!(unmet(&mfa, &record, now).is_some());
        record.acr = Some("urn:hwk".into());
        assert_eq!(unmet(&mfa, &record, now), None);
    }

    #[test]
    fn max_age_is_checked_on_the_idps_clock_with_a_minute_for_the_exchange() {
        assert!(within_max_age(600, 1_000, 1_600));
        assert!(within_max_age(600, 1_000, 1_660));
        assert!(!within_max_age(600, 1_000, 1_661));
        assert!(within_max_age(0, 1_000, 1_002));
    }
}
