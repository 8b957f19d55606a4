//! Fulcrum's configuration: one TOML file, parsed with `deny_unknown_fields`, validated into
//! the runtime [`model`]. Every error names `file:line:col`, the field, and what is wrong.
#![deny(unsafe_code)]

pub mod model;

pub use model::*;
