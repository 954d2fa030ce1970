//! Load against a running stack: the chaos run and the benchmark.
//!
//! The pieces talk to the stack only as a user or an operator would: [`gateway`] through the
//! public HTTP API, `harness::topic` by reading the saga topic, [`metrics`] from the services'
//! Prometheus pages, [`stack`] by calling the scripts that start and stop things
//! (`scripts/service`, `scripts/infra`) and finding the processes they started, [`procfs`] by
//! reading what Linux says about those processes. The decisions are pure and unit-tested: the
//! orders and faults a seed stands for ([`plan`]), what the API and the topic must show once
//! every saga has ended (`harness::invariants`, which the end-to-end tests use too), which sagas the faults cost ([`availability`]), percentiles ([`percentiles`]) and the benchmark's
//! chart ([`chart`]).

pub mod availability;
pub mod chart;
pub mod gateway;
pub mod metrics;
pub mod percentiles;
pub mod plan;
pub mod procfs;
pub mod stack;
