//! Domain types parsed at the boundary: once a value has one of these types it is known valid;
//! and the few rules and figures that several stages share.

pub mod access;
pub mod caller;
pub mod phone;
pub mod production;

pub use caller::Caller;
