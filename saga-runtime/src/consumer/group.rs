//! The consumer's life in its group: the rebalance callbacks librdkafka runs while the fetch
//! loop polls, and the membership the statistics report, by which a consumer stuck out of its
//! group is found and replaced.
//!
//! Each Kafka consumer has a generation, bumped when it is replaced. Callbacks of a replaced
//! consumer (which closes in the background) change nothing: what it had fetched is forgotten
//! already.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext,
    consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance},
    error::KafkaError,
};

use super::{Consumer, EventHandler};

/// How long a consumer may be out of its group while the broker answers before it is
/// replaced: well beyond a rebalance, even one that a paused member holds up until its
/// session times out (2 s, see `kafka::consumer_settings`).
pub const OUT_OF_GROUP: Duration = Duration::from_secs(10);

/// Statistics older than this no longer describe the consumer: it is not being polled.
const CURRENT: Duration = Duration::from_secs(3);

/// What the statistics of the current Kafka consumer last said of its membership in its group:
/// librdkafka's group state is `up` and its join state `steady` while it is a member.
#[derive(Default)]
pub struct Membership {
    /// When the statistics last came; they come each second while the consumer is polled.
    reported: Option<Instant>,
    /// Since when it has been out of its group, if it is.
    out_since: Option<Instant>,
}

impl Membership {
    fn report(&mut self, in_group: bool) {
        let now = Instant::now();
        self.reported = Some(now);
        if in_group {
            self.out_since = None;
        } else {
            self.out_since.get_or_insert(now);
        }
    }

    /// Out of its group for `limit`, by statistics that are still current.
    pub fn stuck(&self, limit: Duration) -> bool {
        let current = self.reported.is_some_and(|at| at.elapsed() < CURRENT);
        current && self.out_since.is_some_and(|since| since.elapsed() >= limit)
    }
}

/// Whether librdkafka's statistics say the consumer is a member of its group; `None` if they
/// say nothing of a group.
fn in_group(statistics: &[u8]) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Statistics {
        cgrp: Option<Group>,
    }
    #[derive(serde::Deserialize)]
    struct Group {
        state: String,
        join_state: String,
    }
    let group = serde_json::from_slice::<Statistics>(statistics)
        .ok()?
        .cgrp?;
    Some(group.state == "up" && group.join_state == "steady")
}

/// The callbacks of one Kafka consumer (of one generation), run by the fetch loop while it
/// polls.
pub struct Events<H> {
    pub consumer: Arc<Consumer<H>>,
    pub generation: u64,
}

impl<H: EventHandler> Events<H> {
    fn current(&self) -> bool {
        self.consumer.state().generation == self.generation
    }
}

impl<H: EventHandler> ClientContext for Events<H> {
    /// The fetch loop logs the errors `recv` returns; the same ones come here too.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error.message = %error, reason, "kafka consumer error");
    }

    /// Reads only the group's part of the statistics, for [`Membership`].
    fn stats_raw(&self, statistics: &[u8]) {
        if !self.current() {
            return;
        }
        if let Some(in_group) = in_group(statistics) {
            self.consumer.membership().report(in_group);
        }
    }
}

impl<H: EventHandler> ConsumerContext for Events<H> {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let partitions: HashSet<i32> =
                revoked.elements().iter().map(|p| p.partition()).collect();
            tracing::info!(partitions = ?partitions, "kafka partitions revoked");
            self.consumer.state().revoke(self.generation, &partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // A replaced consumer, or one closing at shutdown, has nothing to report; and asking
        // librdkafka for the assignment while the consumer closes can block for ever in the
        // consumer's drop.
        if !self.current() || self.consumer.shutdown.is_cancelled() {
            return;
        }
        let assigned = consumer.assignment().map_or(0, |a| a.count());
        self.consumer
            .metrics
            .partitions_assigned
            .set(assigned as i64);
        match rebalance {
            Rebalance::Assign(added) => {
                let added: Vec<i32> = added.elements().iter().map(|p| p.partition()).collect();
                tracing::info!(partitions = ?added, assigned, "kafka partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(error.message = %error, "kafka rebalance failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_stuck_only_once_current_statistics_have_said_so_for_long_enough() {
        let mut membership = Membership::default();
        assert!(!membership.stuck(Duration::ZERO), "no statistics yet");
        membership.report(false);
        assert!(membership.stuck(Duration::ZERO));
        assert!(!membership.stuck(Duration::from_secs(60)), "not for long");
        membership.report(true);
        assert!(!membership.stuck(Duration::ZERO), "back in its group");
        membership.report(false);
        membership.reported = Some(Instant::now() - Duration::from_secs(10));
        assert!(
            !membership.stuck(Duration::ZERO),
            "statistics no longer current"
        );
    }

    #[test]
    fn statistics_say_a_member_only_when_the_group_is_up_and_steady() {
        let stats = |state: &str, join: &str| {
            format!(r#"{{"name":"c","cgrp":{{"state":"{state}","join_state":"{join}"}}}}"#)
        };
        assert_eq!(in_group(stats("up", "steady").as_bytes()), Some(true));
        assert_eq!(in_group(stats("up", "wait-join").as_bytes()), Some(false));
        assert_eq!(
            in_group(stats("wait-coord", "init").as_bytes()),
            Some(false)
        );
        assert_eq!(
            in_group(br#"{"name":"p"}"#),
            None,
            "a producer's statistics"
        );
        assert_eq!(in_group(b"not json"), None);
    }
}
