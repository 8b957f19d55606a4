//! The helpers of tests/common moved to the test kit (`testkit/`): this module re-exports it
//! under its old path for tests written with `mod common; use common::*;`. The testbed's
//! names changed: `Testbed::up` is `Net::testbed`, `testbed_config(tag)` is
//! `net.testbed_config()`, and `Balancer::start(&tb, &scratch, cfg)` is
//! `Balancer::start(&tb, cfg)`. New tests use `testkit` directly; this shim goes once none
//! uses it.

pub use testkit::*;
