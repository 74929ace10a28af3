use leptos::prelude::*;

use crate::{
    components::{
        api_client::{self, Method},
        guard::RequireLogin,
        time::format_utc,
    },
    types::{Note, UserView, ADMIN_ROLE},
};

/// `/notes`: the user's notes, through the protected API `/api/notes` (with
/// the session cookie and `X-CSRF: 1`, like any same-origin API call: see
/// `components::api_client`). The list is fetched by the browser after
/// hydration.
#[component]
pub fn NotesPage() -> impl IntoView {
    view! {
        <RequireLogin return_to="/notes" let:user>
            <ClientOnly><Notes user=user.clone()/></ClientOnly>
        </RequireLogin>
    }
}

/// Renders its children only in the browser, after hydration: the notes
/// panel works through `fetch` and has nothing to show before it runs, so the
/// server sends a placeholder and hydration has nothing to match.
#[component]
fn ClientOnly(children: ChildrenFn) -> impl IntoView {
    let mounted = RwSignal::new(false);
    Effect::new(move |_| mounted.set(true));
    view! {
        <Show when=move || mounted.get() fallback=|| view! { <p>"Loading notes…"</p> }>
            {children()}
        </Show>
    }
}

#[component]
fn Notes(user: UserView) -> impl IntoView {
    let is_admin = user.has_role(ADMIN_ROLE);
    let everyone = RwSignal::new(false);
    let version = RwSignal::new(0u32);
    let error = RwSignal::new(None::<String>);
    let notes = LocalResource::new(move || {
        let all = everyone.get();
        version.track();
        async move { fetch_notes(all).await }
    });
    let text = RwSignal::new(String::new());
    let form = NodeRef::<leptos::html::Form>::new();
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = text.get_untracked();
        leptos::task::spawn_local(async move {
            match create_note(body).await {
                Ok(()) => {
                    text.set(String::new());
                    if let Some(form) = form.get_untracked() {
                        form.reset();
                    }
                    error.set(None);
                    version.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let remove = move |id: i64| {
        leptos::task::spawn_local(async move {
            match delete_note(id).await {
                Ok(()) => version.update(|v| *v += 1),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <section class="notes" data-testid="notes">
            <h1>"Notes"</h1>
            <p class="muted">"Stored by the app's own API (" <code>"/api/notes"</code> "), which this page calls with your session — the browser never holds a token."</p>
            <form class="note-form" on:submit=add node_ref=form>
                <input type="text" name="text" maxlength="2000" placeholder="Write a note…" data-testid="note-text"
                    on:input=move |ev| text.set(event_target_value(&ev))/>
                <button type="submit" class="button primary" data-testid="note-add">"Add note"</button>
            </form>
            {is_admin.then(|| view! {
                <label class="muted">
                    <input type="checkbox" data-testid="notes-everyone"
                        on:change=move |ev| everyone.set(event_target_checked(&ev))/>
                    <span>"Show everyone's notes (admin)"</span>
                </label>
            })}
            {move || error.get().map(|e| view! { <p class="error" data-testid="notes-error">{e}</p> })}
            <Suspense fallback=|| view! { <p>"Loading notes…"</p> }>
                {move || Suspend::new(async move {
                    match notes.await {
                        Ok(list) if list.is_empty() => view! { <p class="muted" data-testid="notes-empty">"No notes yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <ul class="note-list">
                                {list.into_iter().map(|n| view! {
                                    <li data-testid="note">
                                        <p class="note-text">{n.text}</p>
                                        <p class="muted">
                                            <span>{format!("{} · {}", n.owner_name, format_utc(n.created_at))}</span>
                                            <button class="button small" data-testid="note-delete" on:click=move |_| remove(n.id)>"Delete"</button>
                                        </p>
                                    </li>
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(e) => view! { <p class="error">{e}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

async fn fetch_notes(everyone: bool) -> Result<Vec<Note>, String> {
    let path = if everyone {
        "/api/notes?all=true"
    } else {
        "/api/notes"
    };
    api_client::call_json(Method::Get, path, None).await
}

async fn create_note(text: String) -> Result<(), String> {
    let body = serde_json::json!({ "text": text });
    api_client::call(Method::Post, "/api/notes", Some(body))
        .await
        .map(|_| ())
}

async fn delete_note(id: i64) -> Result<(), String> {
    api_client::call(Method::Delete, &format!("/api/notes/{id}"), None)
        .await
        .map(|_| ())
}
