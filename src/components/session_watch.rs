//! Every open tab learns at once that its session ended: the BFF pushes it
//! (`GET /auth/events`, server-sent events) and each tab that hears it tells
//! the others through a `BroadcastChannel`. The tab then says so and offers to
//! sign in again, coming back to the same page.

use leptos::prelude::*;

use crate::{app::UserResource, components::guard::login_url};

/// The channel every Gatehouse tab of this origin listens on.
pub const CHANNEL: &str = "gatehouse-session";

#[component]
pub fn SessionWatch() -> impl IntoView {
    let ended = RwSignal::new(false);
    let user = expect_context::<UserResource>();
    Effect::new(move |watching: Option<bool>| {
        let signed_in = matches!(user.get(), Some(Ok(Some(_))));
        if signed_in && watching != Some(true) {
            #[cfg(feature = "hydrate")]
            watch(ended);
        }
        signed_in || watching == Some(true)
    });
    let again = move || {
        let here = current_path();
        login_url(&here)
    };
    view! {
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
