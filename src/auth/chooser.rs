//! The sign-in chooser: with several providers (`OIDC_PROVIDERS`), "Sign in"
//! lands here and the user picks one. Each choice is a plain link to
//! `/auth/login?idp=<name>` (or `/auth/signup`), so it works without
//! JavaScript and starts its own pending login bound to that provider.

use std::sync::Arc;

use axum::{http::StatusCode, response::Response};

use super::{
    error::{escape, login_href, standalone_page},
    idp::Idp,
    return_to::ReturnTo,
};

pub fn page(idps: &[Arc<Idp>], return_to: &ReturnTo, signup: bool) -> Response {
    let (path, title) = if signup {
        ("/auth/signup", "Create an account with")
    } else {
        ("/auth/login", "Sign in with")
    };
    let choices: String = idps
        .iter()
        .map(|oidc| {
            let idp = oidc.config();
            format!(
                r#"<li><a class="button" data-idp="{name}" href="{href}">{label}</a></li>"#,
                name = escape(&idp.name),
                href = escape(&login_href(path, Some(&idp.name), return_to)),
                label = escape(&idp.label),
            )
        })
        .collect();
    let inner = format!(
        r#"<h1>{title}</h1><ul class="providers">{choices}</ul>
<p><a href="/">Back to Home</a></p>"#
    );
    standalone_page(
        StatusCode::OK,
        title,
        r#"class="page chooser-page""#,
        &inner,
    )
}
