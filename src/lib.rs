//! The parts of `fulcrum` that need no running balancer, as a library so that the fuzz crate
//! (fuzz/) and tests reach them: the control API's types and request decoding ([`api`]), the
//! metrics endpoint's HTTP parsing ([`http`]), and the flow syntax of `which` ([`flowspec`]).
#![deny(unsafe_code)]

pub mod api;
pub mod flowspec;
pub mod http;
