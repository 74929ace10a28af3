//! Every open tab learns at once that its session ended: the BFF pushes it
//! (`GET /auth/events`, server-sent events) and each tab that hears it tells
//! the others through a `BroadcastChannel`. The tab then says so and offers to
//! sign in again, coming back to the same page. Before the idle deadline (two
//! minutes, or half the idle timeout if shorter) it warns and offers "Stay
//! signed in".

use leptos::prelude::*;

use crate::{
    components::{csrf_client::CsrfClient, current_user::UserResource, guard::login_url},
    types::{AppError, SessionTimes},
};

/// Warn this many seconds before the idle deadline (at most half the timeout).
const WARN_BEFORE: i64 = 120;

/// The channel every Gatehouse tab of this origin listens on.
pub const CHANNEL: &str = "gatehouse-session";

/// Whether this tab has learned that its session ended (from the server's
/// event stream, another tab, or a refused "Stay signed in").
#[derive(Clone, Copy)]
pub struct SessionEnded(RwSignal<bool>);

impl SessionEnded {
    /// Provides the flag to the whole app and returns it.
    pub fn provide() -> Self {
        let ended = Self(RwSignal::new(false));
        provide_context(ended);
        ended
    }

    pub fn get(&self) -> bool {
        self.0.get()
    }

    fn set(&self) {
        if !self.0.get_untracked() {
            self.0.try_set(true);
            #[cfg(feature = "hydrate")]
            forget_resource_data();
        }
    }
}

/// What replaces the page once the session ended: no trace of the user, and
/// a way to sign in again that comes back to the same page.
#[component]
pub fn SessionEndedPage() -> impl IntoView {
    let again = login_url(&current_path());
    view! {
        <section class="error-page" role="alert" data-testid="session-ended">
            <h1>"Signed out"</h1>
            <p class="lead">"Your session has ended — sign in again."</p>
            <p><a class="button primary" rel="external" href=again>"Sign in again"</a></p>
        </section>
    }
}

/// The server-rendered page carried the signed-in user's data to the
/// browser in inline scripts (Leptos' resolved resources, read once during
/// hydration). Once the session ended they are removed from the document
/// and the globals, so nothing of the previous user stays in the page.
#[cfg(feature = "hydrate")]
fn forget_resource_data() {
    let Some(window) = web_sys::window() else {
        return;
    };
    if let Some(document) = window.document() {
        if let Ok(scripts) = document.query_selector_all("script:not([src])") {
            for i in 0..scripts.length() {
                if let Some(script) = scripts.item(i) {
                    if let Some(parent) = script.parent_node() {
                        let _ = parent.remove_child(&script);
                    }
                }
            }
        }
    }
    for name in [
        "__RESOLVED_RESOURCES",
        "__SERIALIZED_ERRORS",
        "__PENDING_RESOURCES",
    ] {
        let _ = js_sys::Reflect::set(&window, &name.into(), &js_sys::Array::new());
    }
}

#[component]
pub fn SessionWatch() -> impl IntoView {
    let ended = expect_context::<SessionEnded>();
    // (idle deadline, idle timeout) in seconds, and the browser's clock.
    let deadline = RwSignal::new(None::<(i64, i64)>);
    let now = RwSignal::new(0_i64);
    let user = expect_context::<UserResource>();
    Effect::new(move |watching: Option<bool>| {
        let signed_in = match user.get() {
            Some(Ok(Some(u))) => {
                deadline.set(Some((u.session.idle_expires_at, u.session.idle_timeout)));
                true
            }
            _ => false,
        };
        if signed_in && watching != Some(true) {
            #[cfg(feature = "hydrate")]
            {
                watch(ended);
                let tick = move || now.try_set((js_sys::Date::now() / 1000.0) as i64);
                tick();
                let _ = set_interval_with_handle(
                    move || {
                        tick();
                    },
                    std::time::Duration::from_secs(1),
                );
            }
        }
        signed_in || watching == Some(true)
    });
    let stay = ServerAction::<StaySignedIn>::new();
    Effect::new(move |_| match stay.value().get() {
        Some(Ok(times)) => deadline.set(Some((times.idle_expires_at, times.idle_timeout))),
        Some(Err(AppError::Unauthenticated)) => ended.set(),
        // Store or IdP down: not an ending; the warning stays, "Stay signed in" can be retried.
        _ => {}
    });
    let warning = move || {
        !ended.get()
            && now.get() > 0
            && deadline
                .get()
                .is_some_and(|(at, idle)| at - now.get() <= WARN_BEFORE.min(idle / 2))
    };
    view! {
        <Show when=warning>
            <div class="session-ended idle-warning" role="alertdialog" data-testid="idle-warning">
                <p>"You will be signed out soon because of inactivity."</p>
                <button class="button primary" on:click=move |_| { stay.dispatch(StaySignedIn {}); }>
                    "Stay signed in"
                </button>
            </div>
        </Show>
    }
}

fn current_path() -> String {
    #[cfg(feature = "hydrate")]
    if let Some(location) = web_sys::window().map(|w| w.location()) {
        let path = location.pathname().unwrap_or_else(|_| "/".into());
        let query = location.search().unwrap_or_default();
        return format!("{path}{query}");
    }
    "/".into()
}

/// "Stay signed in": counts as activity (extends the idle deadline) and
/// returns the session's deadlines; 401 `AppError::Unauthenticated` when the
/// session has ended (503 when the store or the IdP cannot be reached: that
/// is not an ending).
#[server(client = CsrfClient)]
pub async fn stay_signed_in() -> Result<SessionTimes, AppError> {
    let (state, user) = crate::auth::authz::server_fn_user().await?;
    let idle = state.config.session.idle_timeout;
    Ok(user.session.times(&user.record, user.idle_deadline, idle))
}

#[cfg(feature = "hydrate")]
fn watch(ended: SessionEnded) {
    use wasm_bindgen::{closure::Closure, JsCast};

    let channel = web_sys::BroadcastChannel::new(CHANNEL).ok();
    if let Some(channel) = &channel {
        let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| {
            ended.set();
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
    }
    let Ok(source) = web_sys::EventSource::new("/auth/events") else {
        return;
    };
    let stream = source.clone();
    let on_ended = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| {
        ended.set();
        if let Some(channel) = &channel {
            let _ = channel.post_message(&"ended".into());
        }
        stream.close();
    });
    let _ = source.add_event_listener_with_callback("ended", on_ended.as_ref().unchecked_ref());
    on_ended.forget();
}
