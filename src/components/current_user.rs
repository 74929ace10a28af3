//! The signed-in user of this page load (or `None`): loaded once, shared by
//! every component through context. Below the pages and the app shell, so
//! both can use it without importing each other.

use leptos::prelude::*;

use crate::{
    components::csrf_client::CsrfClient,
    types::{AppError, SignedInUser, UserView},
};

/// Renders the pages for this user, with no session and no IdP: provided
/// (as context, by server code only: no request can set it) by `make bench`
/// to measure what rendering costs apart from authentication.
#[derive(Clone, Debug)]
pub struct RenderedFor(pub UserView);

/// The signed-in user (or `None`), loaded once per page load and shared.
/// (On the server the user carries its JSON, made once per session record:
/// the answer to the server function and the page's hydration data write
/// it as it is.)
pub type UserResource = Resource<Result<Option<SignedInUser>, AppError>>;

/// Starts loading the user for this page and provides it to every component.
pub fn provide_current_user() -> UserResource {
    let user: UserResource = Resource::new(|| (), |_| current_user());
    provide_context(user);
    user
}

/// The user of this request's session, or `Ok(None)` when anonymous.
///
/// The one server function that answers "not signed in" with `Ok` rather
/// than `Err(AppError::Unauthenticated)`: it asks "who is signed in?", and
/// "nobody" is a valid answer to that, not a refusal. (Every page load asks
/// it; a visitor on a public page is not an error.) A session store that
/// cannot be read also answers `None`: failing closed, as anonymous.
#[server(client = CsrfClient)]
pub async fn current_user() -> Result<Option<SignedInUser>, AppError> {
    if let Some(RenderedFor(user)) = use_context::<RenderedFor>() {
        return Ok(Some(user.into()));
    }
    let session = crate::auth::authz::server_fn_session().await?;
    let state = expect_context::<crate::auth::state::AuthState>();
    Ok(session.signed_in_user(&state).await)
}
