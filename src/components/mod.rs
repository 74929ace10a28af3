//! Reusable pieces of UI.

pub mod api_client;
pub mod claims_table;
pub mod csrf_client;
pub mod current_user;
pub mod guard;
pub mod session_watch;
pub mod time;
pub mod user_menu;
