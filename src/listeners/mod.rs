//! The daemon's listeners besides the milter socket: the HTTP server
//! ([`http`]) with the events endpoint ([`events`]) and metrics/health
//! ([`admin`]) with the operator's console ([`console`]), and the control
//! socket ([`control`]).
//!
//! To add an endpoint: a handler module here over [`crate::shared::Shared`],
//! bound in `daemon::serve`.

pub mod admin;
pub mod console;
pub mod control;
pub mod events;
pub mod http;
