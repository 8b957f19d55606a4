//! The helpers of tests/common moved to the test kit (`testkit/`): this module re-exports it
//! under its old path for tests written with `mod common; use common::*;`. Two names
//! changed: `eal_args_toml(tag)` is `scratch.eal_args_toml(tag)` (the array, for
//! `eal_args = {eal}`) and `eal_prefix(tag)` is `scratch.eal_prefix(tag)`; the testbed's
//! `Testbed::up` is `Net::testbed`, `testbed_config(tag)` is `net.testbed_config()`, and
//! `Balancer::start(&tb, &scratch, cfg)` is `Balancer::start(&tb, cfg)`. New tests use
//! `testkit` directly; this shim goes once none uses it.

pub use testkit::*;
