use leptos::{form::ActionForm, prelude::*};

use crate::{
    components::{
        csrf_client::CsrfClient,
        current_user::UserResource,
        guard::{ConfirmItsYou, RequireRole},
        time::format_utc,
    },
    types::{AppError, SeenUser, ADMIN_ROLE},
};

/// `/admin` (role `admin`): the users seen, their roles and live sessions,
/// and "End all sessions" per user.
///
/// The list's resource is made here, above the guard's `<Suspense>`, not in
/// the panel it renders: during SSR a `<Suspense>` re-walks its children to
/// find nested reads, and a resource created in that walk registers a fresh
/// task each time, which can keep the stream from ever finishing (leptos#4866;
/// the upstream advice is to hoist data loading out of `<Suspense>`). It
/// waits for the user resource and asks the server only for an admin, so a
/// visitor's 302 or 403 is not overwritten by the server function's status.
/// The role this page needs (the server functions behind it check `Admin`).
const ROLE: &str = ADMIN_ROLE;

#[component]
pub fn AdminPage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    let end = ServerAction::<AdminEndUserSessions>::new();
    let users = Resource::new(
        move || end.version().get(),
        move |_| async move {
            match user.await {
                Ok(Some(u)) if u.has_role(ROLE) => admin_overview().await.map(Some),
                _ => Ok(None),
            }
        },
    );
    view! {
        <RequireRole role=ROLE return_to="/admin">
            <AdminPanel users end/>
        </RequireRole>
    }
}

/// Whether the last "End all sessions" was refused for want of a recent
/// sign-in.
fn action_refused_for_step_up(end: ServerAction<AdminEndUserSessions>) -> bool {
    matches!(
        end.value().get_untracked(),
        Some(Err(AppError::StepUpRequired { .. }))
    )
}

#[component]
fn AdminPanel(
    users: Resource<Result<Option<Vec<SeenUser>>, AppError>>,
    end: ServerAction<AdminEndUserSessions>,
) -> impl IntoView {
    view! {
        <section class="admin" data-testid="admin">
            <h1>"Users"</h1>
            <p class="muted">"Everyone who has signed in here, with their roles and live sessions. Ending a user's sessions signs them out in every browser at once."</p>
            {move || end.value().get().map(|result| match result {
                Ok(n) => view! { <p class="notice" data-testid="admin-result">{format!("Ended {n} session(s).")}</p> }.into_any(),
                // The sign-in aged past ADMIN_MAX_AUTH_AGE since the page loaded.
                Err(AppError::StepUpRequired { max_age, acr_values }) => {
                    view! { <ConfirmItsYou return_to="/admin" max_age acr_values/> }.into_any()
                }
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(Some(list)) => view! { <UserTable list end/> }.into_any(),
                        // Not an admin: the guard around this panel shows the 403 or the login.
                        Ok(None) => ().into_any(),
                        // The action was refused for the same reason just
                        // now (the list is fetched again after each action):
                        // its notice above offers the step-up; leaving the
                        // page under the person's click would not.
                        Err(AppError::StepUpRequired { .. }) if action_refused_for_step_up(end) => {
                            ().into_any()
                        }
                        // An admin whose sign-in is too old when the page
                        // opens: straight to the step-up sign-in, which comes
                        // back here.
                        Err(AppError::StepUpRequired { max_age, acr_values }) => {
                            view! { <ConfirmItsYou return_to="/admin" max_age acr_values redirect=true/> }.into_any()
                        }
                        Err(e) => view! { <p class="error">"Users could not be loaded: " {e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn UserTable(list: Vec<SeenUser>, end: ServerAction<AdminEndUserSessions>) -> impl IntoView {
    view! {
        <table class="claims">
            <thead><tr><th>"User"</th><th>"Roles"</th><th>"Last sign-in"</th><th>"Live sessions"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|u| {
                    let count = u.sessions.len();
                    let sub = u.sub.clone();
                    view! {
                        <tr data-testid="admin-user" data-sub=sub>
                            <td>{u.name} <br/> <span class="muted">{u.email.unwrap_or_default()}</span></td>
                            <td>{u.roles.join(", ")}</td>
                            <td>{format_utc(u.last_login)}</td>
                            <td data-testid="admin-session-count">
                                {count}
                                <ul class="plain">
                                    {u.sessions.into_iter().map(|s| view! {
                                        <li>{s.browser} " · " {s.ip.unwrap_or_default()} " · active " {format_utc(s.last_active)}
                                            {s.current.then(|| view! { " " <span class="badge ok">"you"</span> })}
                                        </li>
                                    }.into_any()).collect_view()}
                                </ul>
                            </td>
                            <td>
                                <ActionForm action=end>
                                    <input type="hidden" name="sub" value=u.sub/>
                                    <button type="submit" class="button" disabled=count == 0 data-testid="end-user-sessions">"End all sessions"</button>
                                </ActionForm>
                            </td>
                        </tr>
                    }
                    // Type-erased: the nested row type is deep enough to overflow
                    // rustc's query depth in the release wasm build.
                    .into_any()
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// `/admin`: every user seen, with roles and active sessions. Admins only.
#[server(client = CsrfClient)]
pub async fn admin_overview() -> Result<Vec<SeenUser>, AppError> {
    use crate::auth::authz::{server_fn_role, Admin};
    let (state, admin) = server_fn_role::<Admin>().await?;
    Ok(crate::auth::admin::overview(&state, &admin).await?)
}

/// Ends every session of user `sub` (on every instance); how many ended. Admins only.
#[server(client = CsrfClient)]
pub async fn admin_end_user_sessions(sub: String) -> Result<usize, AppError> {
    use crate::auth::authz::{server_fn_role, Admin};
    let (state, admin) = server_fn_role::<Admin>().await?;
    Ok(crate::auth::admin::end_sessions_of(&state, &admin, &sub).await?)
}
