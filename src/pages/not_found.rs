use leptos::prelude::*;

/// Any unknown path: a real 404 status during SSR.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="error-page">
            <h1>"Page not found"</h1>
            <p class="lead">"There is nothing at this address."</p>
            <p><a class="button" href="/">"Home"</a></p>
        </section>
    }
}
