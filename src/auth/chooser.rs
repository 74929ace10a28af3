//! The sign-in chooser: with several providers (`OIDC_PROVIDERS`), "Sign in"
//! lands here and the user picks one. Each choice is a plain link to
//! `/auth/login?idp=<name>` (or `/auth/signup`), so it works without
//! JavaScript and starts its own pending login bound to that provider.

use std::sync::Arc;

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};

use super::{error::escape, provider::Oidc, return_to::ReturnTo};

pub fn page(idps: &[Arc<Oidc>], return_to: &ReturnTo, signup: bool) -> Response {
    let path = if signup {
        "/auth/signup"
    } else {
        "/auth/login"
    };
    let return_to: String =
        url::form_urlencoded::byte_serialize(return_to.as_str().as_bytes()).collect();
    let choices: String = idps
        .iter()
        .map(|oidc| {
            let idp = oidc.config();
            let name: String = url::form_urlencoded::byte_serialize(idp.name.as_bytes()).collect();
            format!(
                r#"<li><a class="button" data-idp="{name}" href="{href}">{label}</a></li>"#,
                name = escape(&idp.name),
                href = escape(&format!("{path}?idp={name}&return_to={return_to}")),
                label = escape(&idp.label),
            )
        })
        .collect();
    let title = if signup {
        "Create an account with"
    } else {
        "Sign in with"
    };
    let body = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Gatehouse</title><link rel="stylesheet" href="/pkg/gatehouse.css"></head>
<body><main class="page chooser-page">
<h1>{title}</h1><ul class="providers">{choices}</ul>
<p><a href="/">Back to Home</a></p>
</main></body></html>"#
    );
    let mut response = (StatusCode::OK, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
