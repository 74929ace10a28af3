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

use axum::body::{Body, HttpBody as _};
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
    server_fn::ServerFn,
};
use leptos_axum::ResponseOptions;

use super::limits::BODY_LIMIT;
use crate::{
    auth::{api_error::ApiError, session::AuthSession, state::AuthState},
    components::current_user::CurrentUser,
};

/// Every server function, each at its own path and method.
pub fn routes<S>(auth: &AuthState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    leptos::server_fn::axum::server_fn_paths().fold(Router::new(), |router, (path, method)| {
        let filter = MethodFilter::try_from(method.clone())
            .expect("server functions use GET, POST, PUT, PATCH or DELETE");
        let auth = auth.clone();
        let who_is_signed_in = path == <CurrentUser as ServerFn>::PATH;
        router.route(
            path,
            on(filter, move |request: Request| {
                let (method, auth) = (method.clone(), auth.clone());
                async move {
                    if let Some(session) = who_is_signed_in.then(|| direct(&request)).flatten() {
                        return current_user(&auth, session).await;
                    }
                    run(path, method, auth, request).await
                }
            }),
        )
    })
}

/// `current_user` answered directly: every page load and every tab's
/// session check asks it, and it needs nothing of leptos' server-function
/// machinery (no arguments, no reactive owner, no `ResponseOptions`, an
/// answer that is the user's kept JSON). Its answer is the one server_fn
/// writes for the function's own body (`session.signed_in_user`, the same
/// call): 200, `application/json`, the user or `null`
/// (`api::server_fns::current_user_answers_as_the_server_function_would`
/// decodes it with server_fn's own codec).
async fn current_user(auth: &AuthState, session: AuthSession) -> Response {
    let user = session.signed_in_user(auth).await;
    crate::auth::user::json_answer(user.as_ref())
}

/// The request's session when `current_user` may be answered directly:
/// only for the request the function's client sends, an empty body from a
/// script. Anything else (a body to read and limit, a form posted without
/// JavaScript to send back to its page, no session layer) takes the
/// general path.
fn direct(request: &Request) -> Option<AuthSession> {
    if request.body().size_hint().exact() != Some(0) || accepts_html(request) {
        return None;
    }
    AuthSession::of_request(request.extensions())
}

async fn run(path: &'static str, method: Method, auth: AuthState, request: Request) -> Response {
    let Some(mut service) = leptos::server_fn::axum::get_server_fn_service(path, method) else {
        // Only registered paths are routed here.
        return StatusCode::NOT_FOUND.into_response();
    };
    // The body read here, where a body over the limit can be told from
    // others: server_fn reads it itself and makes any failure a 500
    // ("error deserializing"), so a streamed body of unknown size over the
    // limit was a 500 where a declared one is a 413.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(body) => body,
        Err(e) => return ApiError::unreadable_body(&e, BODY_LIMIT).into_response(),
    };
    let request = Request::from_parts(parts, Body::from(body));
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
