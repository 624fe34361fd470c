//! Domain types parsed at the boundary: once a value has one of these types it is known valid.

pub mod phone;
