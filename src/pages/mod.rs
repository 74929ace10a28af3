//! One file per page.

pub mod admin;
pub mod home;
pub mod not_found;
pub mod notes;
pub mod profile;
pub mod sessions;
