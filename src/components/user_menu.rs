//! The header's user menu: avatar (picture or initials), name and "Sign out",
//! or "Sign in" / "Create account" when anonymous.

use leptos::prelude::*;

use crate::{components::current_user::UserResource, types::UserView};

#[component]
pub fn UserMenu() -> impl IntoView {
    let user = expect_context::<UserResource>();
    view! {
        <div class="user-menu">
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match user.await {
                        Ok(Some(u)) => view! { <SignedIn user=u.view()/> }.into_any(),
                        _ => view! { <SignInLinks/> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
pub fn Avatar(user: UserView, #[prop(default = "avatar")] class: &'static str) -> impl IntoView {
    let initials = user.initials();
    match user.picture {
        Some(src) => {
            view! { <img class=class src=src alt=format!("{}'s avatar", user.name)/> }.into_any()
        }
        None => {
            view! { <span class=format!("{class} initials") aria-hidden="true">{initials}</span> }
                .into_any()
        }
    }
}

#[component]
fn SignedIn(user: UserView) -> impl IntoView {
    let name = user.name.clone();
    view! {
        <a class="user-chip" href="/profile" data-testid="user-menu">
            <Avatar user=user.clone()/>
            <span class="user-name">{name}</span>
        </a>
        <SignOutButton/>
    }
}

/// A plain form post: works without JavaScript, and the BFF's anti-forgery
/// layer accepts it because the browser sends our own `Origin`.
#[component]
pub fn SignOutButton() -> impl IntoView {
    view! {
        <form method="post" action="/auth/logout" class="inline-form">
            <button type="submit" class="button">"Sign out"</button>
        </form>
    }
}

/// `rel="external"` makes the client-side router leave these to the server.
#[component]
pub fn SignInLinks() -> impl IntoView {
    view! {
        <a class="button primary" href="/auth/login" rel="external">"Sign in"</a>
        <a class="button" href="/auth/signup" rel="external">"Create account"</a>
    }
}
