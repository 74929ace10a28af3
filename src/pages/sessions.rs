use leptos::{form::ActionForm, prelude::*};

use crate::{
    components::{
        csrf_client::CsrfClient,
        current_user::UserResource,
        guard::{RedirectToLogin, RequireLogin},
        time::format_utc,
    },
    types::{AppError, SessionSummary},
};

/// `/sessions`: the signed-in user's sessions; end any one, or all others.
/// The forms work without JavaScript too (same-origin form posts).
///
/// The list's resource is made here, above the guard's `<Suspense>` (see
/// `pages::admin` for why), and asks the server only for a signed-in user.
#[component]
pub fn SessionsPage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    let end_one = ServerAction::<EndSession>::new();
    let end_others = ServerAction::<EndOtherSessions>::new();
    let sessions = Resource::new(
        move || (end_one.version().get(), end_others.version().get()),
        move |_| async move {
            match user.await {
                Ok(Some(_)) => my_sessions().await,
                Ok(None) => Err(AppError::Unauthenticated),
                Err(e) => Err(e),
            }
        },
    );
    view! {
        <RequireLogin return_to="/sessions" let:_user>
            <section class="sessions" data-testid="sessions">
                <h1>"Your sessions"</h1>
                <p class="muted">"Every browser where you are signed in. Ending a session signs that browser out at once."</p>
                <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match sessions.await {
                            Ok(list) => view! {
                                <SessionTable list end_one/>
                                <ActionForm action=end_others>
                                    <button type="submit" class="button" data-testid="end-others">"End all other sessions"</button>
                                </ActionForm>
                            }.into_any(),
                            // The session ended since the page loaded ("Sign out here").
                            Err(AppError::Unauthenticated) => view! { <RedirectToLogin return_to="/sessions"/> }.into_any(),
                            Err(e) => view! { <p class="error">"Sessions could not be loaded: " {e.to_string()}</p> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
        </RequireLogin>
    }
}

#[component]
fn SessionTable(list: Vec<SessionSummary>, end_one: ServerAction<EndSession>) -> impl IntoView {
    view! {
        <table class="claims sessions-table">
            <thead><tr><th>"Browser"</th><th>"IP"</th><th>"Signed in"</th><th>"Last active"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|s| {
                    let label = if s.current { "Sign out here" } else { "End" };
                    view! {
                        <tr data-testid="session-row" data-current=s.current.to_string()>
                            <td>{s.browser} {s.current.then(|| view! { " " <span class="badge ok">"this browser"</span> })}</td>
                            <td>{s.ip.unwrap_or_default()}</td>
                            <td>{format_utc(s.created_at)}</td>
                            <td>{format_utc(s.last_active)}</td>
                            <td>
                                <ActionForm action=end_one>
                                    <input type="hidden" name="handle" value=s.handle/>
                                    <button type="submit" class="button">{label}</button>
                                </ActionForm>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The signed-in user's sessions, newest first.
///
/// Not signed in is `Err(AppError::Unauthenticated)` (401), as for every
/// server function that needs a user, not `Ok(None)`: the page needs nothing
/// more than that variant to send a visitor to sign in, and a caller outside
/// the page gets a real 401 instead of a 200 that says nothing.
#[server(client = CsrfClient)]
pub async fn my_sessions() -> Result<Vec<SessionSummary>, AppError> {
    use crate::auth::{api_error::ApiError, authz::server_fn_user, sessions};
    let (state, user) = server_fn_user().await?;
    Ok(sessions::list(&state, &user)
        .await
        .map_err(ApiError::from)?)
}

/// Ends one of the signed-in user's sessions (by handle); how many ended.
/// 401 `AppError::Unauthenticated` when not signed in.
#[server(client = CsrfClient)]
pub async fn end_session(handle: String) -> Result<usize, AppError> {
    use crate::auth::{api_error::ApiError, authz::server_fn_user, sessions};
    let (state, user) = server_fn_user().await?;
    Ok(
        sessions::end(&state, &user, sessions::Which::Handle(&handle))
            .await
            .map_err(ApiError::from)?,
    )
}

/// Ends every session of the signed-in user except this one; how many ended.
/// 401 `AppError::Unauthenticated` when not signed in.
#[server(client = CsrfClient)]
pub async fn end_other_sessions() -> Result<usize, AppError> {
    use crate::auth::{api_error::ApiError, authz::server_fn_user, sessions};
    let (state, user) = server_fn_user().await?;
    Ok(sessions::end(&state, &user, sessions::Which::AllOthers)
        .await
        .map_err(ApiError::from)?)
}
