//! One integration-test binary (links once): the real app, the real dev IdP.

mod authz;
mod backchannel;
mod cache;
mod client_auth;
mod csrf;
mod embed;
mod ended;
mod events;
mod fuzz_corpus;
mod headers;
mod helpers;
mod hostile_idp;
mod limits;
mod login_flow;
mod logout;
mod policy;
mod providers;
mod redis;
mod refresh;
mod relay;
mod rendering;
mod roles;
mod selfcheck;
mod sessions;
mod step_up;
mod store_cas;
