use leptos::prelude::*;

use crate::components::{current_user::UserResource, user_menu::SignInLinks};

/// `/`: public. Explains what Gatehouse is and offers sign-in or sign-up.
#[component]
pub fn HomePage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    view! {
        <section class="hero">
            <h1>"Sign-in done the way security people recommend"</h1>
            <p class="lead">
                "Gatehouse is a backend-for-frontend: it runs the whole OpenID Connect flow on the server, "
                "keeps every token there, and gives your browser nothing but an opaque, HttpOnly session cookie."
            </p>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match user.await {
                        Ok(Some(u)) => view! {
                            <p class="welcome">"Welcome back, " <strong>{u.name.clone()}</strong> "."</p>
                            <p><a class="button primary" href="/profile">"See your profile"</a></p>
                        }.into_any(),
                        _ => view! { <p class="actions"><SignInLinks/></p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
        <section class="facts">
            <div class="fact"><h3>"No tokens in the browser"</h3><p>"Access, refresh and ID tokens stay in the server-side session store."</p></div>
            <div class="fact"><h3>"Standards, not home-made crypto"</h3><p>"Authorization code flow with PKCE, state, nonce and issuer checks."</p></div>
            <div class="fact"><h3>"Fails closed"</h3><p>"Every rejected login ends on a clear page, never in a half-signed-in state."</p></div>
        </section>
    }
}
