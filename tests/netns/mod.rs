//! The namespace harness moved to the test kit (`testkit/`): this module re-exports it under
//! its old path, so that a test written with `mod netns; use netns::{Net, Balancer, ...};`
//! builds unchanged. New tests use `testkit` directly; this shim goes once none uses it.

pub use testkit::*;
