//! The governed metrics layer: a reviewed catalogue of measures and dimensions
//! (`metrics/catalogue.toml`), a typed query spec, a compiler to one parameterised read-only
//! statement, its execution, and the deterministic rendering of the result, in words and as a
//! chart. It knows nothing of questions: the brain turns a question into a [`spec::Spec`].

pub mod catalogue;
pub mod chart;
pub mod compile;
pub mod format;
pub mod render;
pub mod run;
pub mod spec;
