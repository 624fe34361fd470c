//! The HTTP surface that belongs to no single pipeline stage: health, readiness, metrics.

pub mod health;
