//! The messaging machinery every service shares, written once (saga-rules §4 rule 6):
//!
//! - [`outbox`]: events are written in the same database transaction as the state change that
//!   causes them, and a relay publishes them with an idempotent producer, woken by the commit.
//! - [`inbox`] and [`consumer`]: each consumed event is applied at most once, in one transaction
//!   with its effects; offsets are stored only after that transaction commits, so a crash
//!   anywhere loses nothing and applies nothing twice.
//! - [`http`], [`input`], [`openapi`], [`metrics`], [`telemetry`], [`config`], [`retry`]: the
//!   parts of a service that are not its domain, and [`service`], which starts them all and
//!   stops them gracefully.

pub mod clock;
pub mod config;
pub mod consumer;
pub mod db;
pub mod http;
pub mod inbox;
pub mod input;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod retention;
pub mod retry;
pub mod service;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use clock::Clock;
pub use consumer::{EventHandler, Outcome};
pub use service::{App, Service, ServiceContext, serve};
