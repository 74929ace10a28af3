//! Every open tab learns at once that its session ended: the BFF pushes it
//! (`GET /auth/events`, server-sent events) and each tab that hears it tells
//! the others through a `BroadcastChannel`. The tab then says so and offers to
//! sign in again, coming back to the same page. Before the idle deadline (two
//! minutes, or half the idle timeout if shorter) it warns and offers "Stay
//! signed in".

use leptos::prelude::*;

use crate::{api::StaySignedIn, app::UserResource, components::guard::login_url};

/// Warn this many seconds before the idle deadline (at most half the timeout).
const WARN_BEFORE: i64 = 120;

/// The channel every Gatehouse tab of this origin listens on.
pub const CHANNEL: &str = "gatehouse-session";

#[component]
pub fn SessionWatch() -> impl IntoView {
    let ended = RwSignal::new(false);
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
        Some(Ok(Some(times))) => deadline.set(Some((times.idle_expires_at, times.idle_timeout))),
        Some(Ok(None)) => ended.set(true),
        _ => {}
    });
    let warning = move || {
        !ended.get()
            && now.get() > 0
            && deadline
                .get()
                .is_some_and(|(at, idle)| at - now.get() <= WARN_BEFORE.min(idle / 2))
    };
    let again = move || {
        let here = current_path();
        login_url(&here)
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
        <Show when=move || ended.get()>
            <div class="session-ended" role="alertdialog" data-testid="session-ended">
                <p>"Your session has ended — sign in again."</p>
                <a class="button primary" rel="external" href=again>"Sign in again"</a>
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

#[cfg(feature = "hydrate")]
fn watch(ended: RwSignal<bool>) {
    use wasm_bindgen::{closure::Closure, JsCast};

    let channel = web_sys::BroadcastChannel::new(CHANNEL).ok();
    if let Some(channel) = &channel {
        let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| {
            ended.try_set(true);
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();
    }
    let Ok(source) = web_sys::EventSource::new("/auth/events") else {
        return;
    };
    let stream = source.clone();
    let on_ended = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| {
        ended.try_set(true);
        if let Some(channel) = &channel {
            let _ = channel.post_message(&"ended".into());
        }
        stream.close();
    });
    let _ = source.add_event_listener_with_callback("ended", on_ended.as_ref().unchecked_ref());
    on_ended.forget();
}
