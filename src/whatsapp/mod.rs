//! Meta's protocol, nothing else: the payload types of webhook deliveries, the signature, the
//! Graph API client that sends (and the local sink that stands in for it), and the local chat
//! that plays a phone. The webhook handler itself is the inbox's front door
//! ([`crate::inbox::webhook`]).

pub mod graph;
pub mod local;
pub mod payload;
pub mod signature;
