//! The anti-forgery header the browser sends on every call to our own
//! origin: every server function goes through [`CsrfClient`], every other
//! JSON call through [`api_client`](super::api_client). Both take the header
//! from here.

/// The anti-forgery header's name (`X-CSRF: 1`; the server checks it in
/// `auth::csrf`).
pub const CSRF_HEADER: &str = "X-CSRF";
/// The anti-forgery header's value.
pub const CSRF_VALUE: &str = "1";

/// The server-function client: the browser's `fetch` (gloo-net, via server_fn's
/// `BrowserClient`) with the anti-forgery header `X-CSRF: 1` on every call. A
/// custom header cannot be sent cross-origin without a CORS preflight, which the
/// BFF never grants, so a request carrying it came from our own pages.
pub struct CsrfClient;

mod browser_client {
    use super::{CsrfClient, CSRF_HEADER, CSRF_VALUE};
    use leptos::server_fn::{
        client::{browser::BrowserClient, Client},
        error::FromServerFnError,
        request::browser::BrowserRequest,
        response::browser::BrowserResponse,
    };
    use std::future::Future;

    // Leptos compiles server_fn's browser client on every target; on the server
    // this impl only satisfies the macro (server functions run in-process there).
    impl<E, IS, OS> Client<E, IS, OS> for CsrfClient
    where
        E: FromServerFnError,
        IS: FromServerFnError,
        OS: FromServerFnError,
    {
        type Request = BrowserRequest;
        type Response = BrowserResponse;

        fn send(req: Self::Request) -> impl Future<Output = Result<Self::Response, E>> + Send {
            req.headers().append(CSRF_HEADER, CSRF_VALUE);
            <BrowserClient as Client<E, IS, OS>>::send(req)
        }

        #[allow(clippy::type_complexity)]
        fn open_websocket(
            path: &str,
        ) -> impl Future<
            Output = Result<
                (
                    impl futures::Stream<Item = Result<bytes::Bytes, bytes::Bytes>> + Send + 'static,
                    impl futures::Sink<bytes::Bytes> + Send + 'static,
                ),
                E,
            >,
        > + Send {
            <BrowserClient as Client<E, IS, OS>>::open_websocket(path)
        }

        fn spawn(future: impl Future<Output = ()> + Send + 'static) {
            <BrowserClient as Client<E, IS, OS>>::spawn(future)
        }
    }
}
