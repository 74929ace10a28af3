//! The signed-in user of this page load (or `None`): loaded once, shared by
//! every component through context. Below the pages and the app shell, so
//! both can use it without importing each other.

use leptos::prelude::*;

use crate::{components::csrf_client::CsrfClient, types::UserView};

/// The signed-in user (or `None`), loaded once per page load and shared.
pub type UserResource = Resource<Result<Option<UserView>, ServerFnError>>;

/// Starts loading the user for this page and provides it to every component.
pub fn provide_current_user() -> UserResource {
    let user: UserResource = Resource::new(|| (), |_| current_user());
    provide_context(user);
    user
}

/// The user of this request's session, or `None` when anonymous.
#[server(client = CsrfClient)]
pub async fn current_user() -> Result<Option<UserView>, ServerFnError> {
    use crate::auth::session::AuthSession;
    let session: AuthSession = leptos_axum::extract().await?;
    let state = expect_context::<crate::auth::state::AuthState>();
    Ok(session.user_view(&state).await)
}
