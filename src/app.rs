//! The document shell, the router and the header.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Link, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    lazy_route, path, Lazy, LazyRoute, SsrMode,
};

use crate::{
    components::{
        current_user::{provide_current_user, UserResource},
        session_watch::{SessionEnded, SessionEndedPage, SessionWatch},
        user_menu::{SignInLinks, UserMenu},
    },
    pages::{
        admin::AdminPage, home::HomePage, not_found::NotFound, notes::NotesPage,
        profile::ProfilePage, sessions::SessionsPage,
    },
    types::ADMIN_ROLE,
};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::server::headers::adopt_csp_nonce();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_current_user();
    // Once this tab learns its session ended, every signed-in view goes: the
    // user menu, the page (and the data it loaded), the admin link.
    let ended = SessionEnded::provide();

    view! {
        <Stylesheet id="leptos" href="/pkg/gatehouse.css"/>
        <Title text="Gatehouse"/>
        <Link rel="icon" href="/favicon.svg" type_="image/svg+xml"/>
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand">
                    <img class="brand-mark" src="/favicon.svg" alt="" width="22" height="22"/>
                    "Gatehouse"
                </A>
                <nav class="nav">
                    <A href="/">"Home"</A>
                    <A href="/profile">"Profile"</A>
                    <A href="/sessions">"Sessions"</A>
                    <A href="/notes">"Notes"</A>
                    <AdminLink/>
                </nav>
                <Show
                    when=move || !ended.get()
                    fallback=|| view! { <div class="user-menu"><SignInLinks/></div> }
                >
                    <UserMenu/>
                </Show>
            </header>
            <SessionWatch/>
            <main class="page">
                <Show when=move || !ended.get() fallback=|| view! { <SessionEndedPage/> }>
                <Routes fallback=|| view! { <NotFound/> }>
                    <Route path=path!("/") view=HomePage/>
                    // Async: the whole page waits for the session check, so an
                    // anonymous visitor gets a real redirect, not a flash of content.
                    <Route path=path!("/profile") view={Lazy::<ProfileRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/sessions") view={Lazy::<SessionsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/notes") view={Lazy::<NotesRoute>::new()} ssr=SsrMode::Async/>
                    // Async too: a forbidden visitor gets a real 403 status.
                    <Route path=path!("/admin") view={Lazy::<AdminRoute>::new()} ssr=SsrMode::Async/>
                </Routes>
                </Show>
            </main>
        </Router>
    }
}

/// "Admin" in the header, for admins only (the page checks again).
#[component]
fn AdminLink() -> impl IntoView {
    let user = expect_context::<UserResource>();
    let ended = expect_context::<SessionEnded>();
    view! {
        <Transition>
            {move || user.get().and_then(|u| u.ok().flatten()).filter(|u| u.has_role(ADMIN_ROLE) && !ended.get()).map(|_| view! {
                <A href="/admin">"Admin"</A>
            })}
        </Transition>
    }
}

// The signed-in pages are lazy routes: with `cargo leptos --split` their code
// is its own wasm chunk, fetched when the page is first shown, so the first
// load of `/` does not carry them (they were ~120 KiB of its 300 KiB brotli).
// Their data is loaded inside the pages, as before; only the view code waits.
// The split chunk is named after the route type (`split___profile_route_view…`).
macro_rules! lazy_page {
    ($($route:ident => $page:ident;)*) => {$(
        #[doc = concat!("`", stringify!($page), "`, split out of the main bundle.")]
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                Self
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page/> }.into_any()
            }
        }
    )*};
}

lazy_page! {
    ProfileRoute => ProfilePage;
    SessionsRoute => SessionsPage;
    NotesRoute => NotesPage;
    AdminRoute => AdminPage;
}
