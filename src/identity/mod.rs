//! Who may chat: the phone/BSUID whitelist, device trust by email OTP, and the caller's role and
//! permissions handed to the brain.

pub mod gate;
pub mod mailer;
