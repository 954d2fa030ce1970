//! Prometheus metrics of one service, in a registry the service owns (no global statics).
//! Names follow the consume/produce patterns the project comes from: `messages_consumed`,
//! `messages_produced` and `message_errors`, labelled by `app` and `job` (the event type).
//! Counters start at zero for every label value known at start (as Prometheus advises), so a
//! dashboard shows 0 rather than "no data" before the first error.

use common_events::EventType;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
    core::Collector,
};

/// What a `message_errors` count is about besides event types: fetching, publishing, and
/// setting events aside.
pub const CONSUME: &str = "consume";
pub const PUBLISH: &str = "publish";
pub const DEAD_LETTER: &str = "dead-letter";

/// Why an event was set aside, the `exception` label of `events_dead_lettered`.
pub const DEAD_LETTER_KINDS: [&str; 3] = ["unreadable", "invalid", "failed"];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    app: &'static str,
    consumed: IntCounterVec,
    produced: IntCounterVec,
    errors: IntCounterVec,
    ignored: IntCounterVec,
    duplicates: IntCounterVec,
    dead_lettered: IntCounterVec,
    clients_recreated: IntCounterVec,
    pruned: IntCounterVec,
    pub outbox_backlog: IntGauge,
    /// Partitions this instance's consumer has been given.
    pub partitions_assigned: IntGauge,
}

impl Metrics {
    /// The metrics of `app`, which consumes and produces the given event types.
    pub fn new(
        app: &'static str,
        consumes: &[EventType],
        produces: &[EventType],
    ) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        let metrics = Metrics {
            app,
            consumed: counter(
                "messages_consumed",
                "Messages consumed, by event type.",
                &["app", "job"],
            )?,
            produced: counter(
                "messages_produced",
                "Messages produced, by event type.",
                &["app", "job"],
            )?,
            errors: counter(
                "message_errors",
                "Errors while handling messages, by kind.",
                &["app", "job", "exception"],
            )?,
            ignored: counter(
                "events_ignored",
                "Events recorded but not acted on (expired, late, duplicate compensation).",
                &["app", "job", "reason"],
            )?,
            duplicates: counter(
                "duplicates_skipped",
                "Redelivered events the inbox had already applied.",
                &["app", "job"],
            )?,
            dead_lettered: counter(
                "events_dead_lettered",
                "Events set aside on the dead-letter topic: unreadable, invalid, or failed \
                 every attempt to handle them.",
                &["app", "exception"],
            )?,
            clients_recreated: counter(
                "kafka_clients_recreated",
                "Kafka clients replaced after a fatal error, by client (consumer, producer).",
                &["app", "client"],
            )?,
            pruned: counter(
                "rows_pruned",
                "Rows deleted by retention, by table.",
                &["app", "table"],
            )?,
            outbox_backlog: IntGauge::new(
                "outbox_backlog",
                "Events written but not yet published.",
            )?,
            partitions_assigned: IntGauge::new(
                "kafka_partitions_assigned",
                "Partitions of the saga topic this instance consumes.",
            )?,
            registry,
        };
        metrics.register(metrics.outbox_backlog.clone())?;
        metrics.register(metrics.partitions_assigned.clone())?;
        metrics.start_at_zero(consumes, produces);
        Ok(metrics)
    }

    fn start_at_zero(&self, consumes: &[EventType], produces: &[EventType]) {
        let app = self.app;
        for job in consumes {
            let job = job.as_str();
            self.consumed.with_label_values(&[app, job]);
            self.duplicates.with_label_values(&[app, job]);
            for exception in ["handler", "database"] {
                self.errors.with_label_values(&[app, job, exception]);
            }
        }
        for job in produces {
            self.produced.with_label_values(&[app, job.as_str()]);
        }
        for job in [CONSUME, PUBLISH, DEAD_LETTER] {
            self.errors.with_label_values(&[app, job, "kafka"]);
        }
        for kind in DEAD_LETTER_KINDS {
            self.dead_lettered.with_label_values(&[app, kind]);
        }
        for client in ["consumer", "producer"] {
            self.clients_recreated.with_label_values(&[app, client]);
        }
    }

    pub fn pruned(&self, table: &str, rows: u64) {
        self.pruned
            .with_label_values(&[self.app, table])
            .inc_by(rows);
    }
    pub fn consumed(&self, job: &str) {
        self.consumed.with_label_values(&[self.app, job]).inc();
    }
    pub fn produced(&self, job: &str) {
        self.produced.with_label_values(&[self.app, job]).inc();
    }
    pub fn error(&self, job: &str, exception: &str) {
        self.errors
            .with_label_values(&[self.app, job, exception])
            .inc();
    }
    pub fn ignored(&self, job: &str, reason: &str) {
        self.ignored
            .with_label_values(&[self.app, job, reason])
            .inc();
    }
    pub fn duplicate(&self, job: &str) {
        self.duplicates.with_label_values(&[self.app, job]).inc();
    }
    pub fn dead_lettered(&self, exception: &str) {
        self.dead_lettered
            .with_label_values(&[self.app, exception])
            .inc();
    }
    pub fn client_recreated(&self, client: &str) {
        self.clients_recreated
            .with_label_values(&[self.app, client])
            .inc();
    }

    /// Registers a service's own counter, labelled `app` and `labels`.
    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> anyhow::Result<IntCounterVec> {
        let labels: Vec<&str> = std::iter::once("app")
            .chain(labels.iter().copied())
            .collect();
        let counter = IntCounterVec::new(Opts::new(name, help), &labels)?;
        self.register(counter.clone())?;
        Ok(counter)
    }

    /// Registers a service's own histogram, labelled `app` and `labels`.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> anyhow::Result<HistogramVec> {
        let labels: Vec<&str> = std::iter::once("app")
            .chain(labels.iter().copied())
            .collect();
        let histogram =
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &labels)?;
        self.register(histogram.clone())?;
        Ok(histogram)
    }

    pub fn app(&self) -> &'static str {
        self.app
    }

    fn register(&self, collector: impl Collector + 'static) -> anyhow::Result<()> {
        Ok(self.registry.register(Box::new(collector))?)
    }

    /// The text exposition format, as `/metrics` serves it.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_for_every_known_label() {
        let metrics = Metrics::new(
            "point-service",
            &[EventType::ExchangeSucceed],
            &[EventType::PointUsed],
        )
        .unwrap();
        let text = metrics.render();
        for series in [
            r#"messages_consumed{app="point-service",job="ExchangeSucceed"} 0"#,
            r#"messages_produced{app="point-service",job="PointUsed"} 0"#,
            r#"message_errors{app="point-service",exception="handler",job="ExchangeSucceed"} 0"#,
            r#"message_errors{app="point-service",exception="kafka",job="consume"} 0"#,
            r#"events_dead_lettered{app="point-service",exception="failed"} 0"#,
            r#"duplicates_skipped{app="point-service",job="ExchangeSucceed"} 0"#,
            r#"kafka_clients_recreated{app="point-service",client="consumer"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        metrics.error("ExchangeSucceed", "handler");
        assert!(metrics.render().contains(
            r#"message_errors{app="point-service",exception="handler",job="ExchangeSucceed"} 1"#
        ));
    }
}
