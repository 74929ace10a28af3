//! The server functions' routes: each registered server function at its
//! path, run the way leptos_axum's `handle_server_fns_with_context` runs it
//! (in a reactive owner, with a `ResponseOptions` the function may set its
//! status and headers through, and a plain form post sent back to the page
//! it came from), without the copy of the request's parts that one provides
//! as context: the request's head cloned, and dropped, on every call
//! (callgrind: 3.5k instructions of a 62k `current_user` call). None of ours
//! reads the parts: they get the BFF core and the request's session as
//! context instead ([`AuthState`], [`AuthSession`]), so they need not
//! extract either from the request.

use axum::{
    extract::Request,
    http::{header, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{on, MethodFilter},
    Router,
};
use leptos::{
    prelude::provide_context,
    reactive::{computed::ScopedFuture, owner::Owner},
};
use leptos_axum::ResponseOptions;

use crate::auth::{session::AuthSession, state::AuthState};

/// Every server function, each at its own path and method.
pub fn routes<S>(auth: &AuthState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    leptos::server_fn::axum::server_fn_paths().fold(Router::new(), |router, (path, method)| {
        let filter = MethodFilter::try_from(method.clone())
            .expect("server functions use GET, POST, PUT, PATCH or DELETE");
        let auth = auth.clone();
        router.route(
            path,
            on(filter, move |request: Request| {
                run(path, method.clone(), auth.clone(), request)
            }),
        )
    })
}

async fn run(path: &'static str, method: Method, auth: AuthState, request: Request) -> Response {
    let Some(mut service) = leptos::server_fn::axum::get_server_fn_service(path, method) else {
        // Only registered paths are routed here.
        return StatusCode::NOT_FOUND.into_response();
    };
    let session = AuthSession::of_request(request.extensions());
    // A form posted without JavaScript (an `ActionForm` before hydration)
    // goes back to its page, as leptos_axum does it.
    let back_to = accepts_html(&request)
        .then(|| request.headers().get(header::REFERER).cloned())
        .flatten();
    Owner::new()
        .with(|| {
            ScopedFuture::new(async move {
                let options = ResponseOptions::default();
                provide_context(options.clone());
                provide_context(auth);
                if let Some(session) = session {
                    provide_context(session);
                }
                let mut response = service.run(request).await;
                if let Some(page) = back_to {
                    if !response.headers().contains_key(header::LOCATION) {
                        *response.status_mut() = StatusCode::FOUND;
                        response.headers_mut().insert(header::LOCATION, page);
                    }
                }
                // The status and headers the function set, over its answer's.
                let mut set = options.0.write().unwrap_or_else(|e| e.into_inner());
                if let Some(status) = set.status {
                    *response.status_mut() = status;
                }
                response
                    .headers_mut()
                    .extend(std::mem::take(&mut set.headers));
                drop(set);
                response
            })
        })
        .await
}

fn accepts_html(request: &Request) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}
