//! Prometheus metrics of one service, in a registry the service owns (no global statics).
//! Names follow the consume/produce patterns the project comes from: `messages_consumed`,
//! `messages_produced` and `message_errors`, labelled by `app` and `job` (the event type).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
    core::Collector,
};

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
    pub outbox_backlog: IntGauge,
}

impl Metrics {
    pub fn new(app: &'static str) -> anyhow::Result<Self> {
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
                "Unreadable or invalid events set aside on the dead-letter topic.",
                &["app", "exception"],
            )?,
            outbox_backlog: IntGauge::new(
                "outbox_backlog",
                "Events written but not yet published.",
            )?,
            registry,
        };
        metrics
            .registry
            .register(Box::new(metrics.outbox_backlog.clone()))?;
        Ok(metrics)
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
