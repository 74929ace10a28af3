use leptos::prelude::*;

use crate::{
    components::{current_user::UserResource, guard::require_login, time::format_utc},
    types::{Note, UserView, ADMIN_ROLE},
};

/// `/notes`: the user's notes, through the protected API `/api/notes` (with
/// the session cookie and `X-CSRF: 1`, like any same-origin API call). The
/// list is fetched by the browser after hydration.
#[component]
pub fn NotesPage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match user.await {
                    Ok(Some(u)) => view! { <ClientOnly><Notes user=u.clone()/></ClientOnly> }.into_any(),
                    Ok(None) => {
                        require_login("/notes");
                        view! { <p>"Redirecting to sign in…"</p> }.into_any()
                    }
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
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
    let url = if everyone {
        "/api/notes?all=true"
    } else {
        "/api/notes"
    };
    let body = call("GET", url, None).await?;
    serde_json::from_str(&body).map_err(|_| "The server's answer was malformed.".to_string())
}

async fn create_note(text: String) -> Result<(), String> {
    let body = serde_json::json!({ "text": text }).to_string();
    call("POST", "/api/notes", Some(body)).await.map(|_| ())
}

async fn delete_note(id: i64) -> Result<(), String> {
    call("DELETE", &format!("/api/notes/{id}"), None)
        .await
        .map(|_| ())
}

/// One same-origin API call with the anti-forgery header; the error is the
/// API's own message.
async fn call(method: &str, url: &str, body: Option<String>) -> Result<String, String> {
    #[cfg(feature = "hydrate")]
    {
        use gloo_net::http::{Method, RequestBuilder};
        let method = match method {
            "POST" => Method::POST,
            "DELETE" => Method::DELETE,
            _ => Method::GET,
        };
        let builder = RequestBuilder::new(url)
            .method(method)
            .header("X-CSRF", "1");
        let request = match body {
            Some(json) => builder
                .header("Content-Type", "application/json")
                .body(json)
                .map_err(|e| e.to_string())?,
            None => builder.build().map_err(|e| e.to_string())?,
        };
        let response = request
            .send()
            .await
            .map_err(|e| format!("The server could not be reached: {e}"))?;
        let text = response.text().await.unwrap_or_default();
        if response.status() == 401 {
            return Err("Your session has ended — sign in again.".into());
        }
        if !response.ok() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("The request failed ({}).", response.status()));
            return Err(message);
        }
        Ok(text)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (method, url, body);
        Err("Notes are fetched from the browser.".into())
    }
}
