//! Domain types parsed at the boundary: once a value has one of these types it is known valid;
//! and the few rules and figures that several stages share (which module's data a permission
//! reads, the reject-rate threshold, one-time codes: the chat's device codes, the approvals'
//! step-up codes and the admin sign-in's second factor).

pub mod access;
pub mod caller;
pub mod otp;
pub mod phone;
pub mod production;

pub use caller::Caller;
