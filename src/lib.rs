//! Gatehouse: a Leptos front end and the axum backend-for-frontend that owns
//! the OpenID Connect flow. The browser/server boundary is in the tree:
//! `types`, `app`, `pages` and `components` compile for both sides and hold no
//! token; `auth` (the BFF core) and `server` exist only on the server.

pub mod app;
pub mod components;
pub mod pages;
pub mod types;

#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod server;

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Asynchronous hydration (what `hydrate_lazy` does), because the signed-in
    // pages are lazy routes: a page's wasm chunk is fetched before its HTML is
    // hydrated. `hydrate_body` panics on a lazy route.
    wasm_bindgen_futures::spawn_local(async {
        let body = leptos::prelude::document()
            .body()
            .expect("the page has a <body>");
        leptos::mount::hydrate_from_async(body, app::App)
            .await
            .forget();
        // When hydration finished, for `make bench` and anyone measuring.
        if let Some(window) = web_sys::window() {
            let at = window.performance().map_or(0.0, |p| p.now());
            if let Some(root) = window.document().and_then(|d| d.document_element()) {
                let _ = root.set_attribute("data-hydrated-at", &format!("{at:.1}"));
            }
        }
    });
}
