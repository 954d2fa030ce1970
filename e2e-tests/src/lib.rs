//! The harness of the process-level tests: each test gets a [`Stack`] of the real service
//! binaries ([`stack`]), wired to the real Kafka broker and PostgreSQL server named by
//! `KAFKA_BOOTSTRAP` and `PG_URL` (as `scripts/test` provides them), with its own topic,
//! consumer groups and databases, so tests never see each other's data. A test speaks to the
//! services over HTTP ([`http`]), publishes and reads the topic ([`kafka`]), waits for its sagas
//! to end and judges them with the invariants the chaos run uses ([`sagas`]). Nothing here
//! sleeps for a fixed time: every wait polls a condition with a timeout ([`wait_until`]). Tests that
//! kill the broker or the database run a stack on servers of their own ([`infra`]); tests of one
//! service run it inside the test process ([`in_process`]).

mod binaries;
mod databases;
pub mod http;
pub mod in_process;
pub mod infra;
pub mod kafka;
pub mod sagas;
pub mod stack;

pub use harness::Servers;
pub use harness::wait::{SETTLE, time_until, wait_until};
pub use http::{ids, normalize};
pub use kafka::{PARTITIONS, read_topic};
pub use sagas::{
    APPROVED_EVENTS, REJECTED_BY_DEADLINE_EVENTS, REJECTED_FOR_POINTS_EVENTS, Settled,
};
pub use stack::{SERVICES, Stack};
