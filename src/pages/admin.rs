use leptos::{form::ActionForm, prelude::*};

use crate::{
    api::{admin_overview, AdminEndUserSessions, SeenUser},
    components::{guard::RequireRole, time::format_utc},
};

/// `/admin` (role `admin`): the users seen, their roles and live sessions,
/// and "End all sessions" per user.
#[component]
pub fn AdminPage() -> impl IntoView {
    view! {
        <RequireRole role="admin" return_to="/admin">
            <AdminPanel/>
        </RequireRole>
    }
}

#[component]
fn AdminPanel() -> impl IntoView {
    let end = ServerAction::<AdminEndUserSessions>::new();
    let users = Resource::new(move || end.version().get(), |_| admin_overview());
    view! {
        <section class="admin" data-testid="admin">
            <h1>"Users"</h1>
            <p class="muted">"Everyone who has signed in here, with their roles and live sessions. Ending a user's sessions signs them out in every browser at once."</p>
            {move || end.value().get().map(|result| match result {
                Ok(n) => view! { <p class="notice" data-testid="admin-result">{format!("Ended {n} session(s).")}</p> }.into_any(),
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(list) => view! { <UserTable list end/> }.into_any(),
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
