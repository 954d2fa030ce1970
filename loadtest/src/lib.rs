//! Load against a running stack: the chaos run now, the benchmark later.
//!
//! The pieces talk to the stack only as a user would: [`gateway`] through the public HTTP API,
//! [`topic`] by reading the saga topic, [`stack`] by calling the scripts that start and stop
//! things (`scripts/service`, `scripts/infra`). The decisions are pure and unit-tested: the
//! orders and faults a seed stands for ([`plan`]), and what the API and the topic must show
//! once every saga has ended ([`invariants`]).

pub mod gateway;
pub mod invariants;
pub mod plan;
pub mod stack;
pub mod topic;
