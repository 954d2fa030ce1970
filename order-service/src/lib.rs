//! The order service: takes orders over HTTP, fixes each saga's deadline, and settles the order
//! from what the other services report (saga-rules §3, §4).

pub mod domain;
mod group_commit;
mod handlers;
pub mod http;
pub mod view;

use std::{sync::Arc, time::Duration};

use common_events::EventType;
use group_commit::GroupCommit;
use prometheus::{HistogramVec, IntCounterVec};
use saga_runtime::{
    Clock, Service, ServiceContext, config::Vars, metrics::Metrics, retention::Table,
};
use sqlx::{PgPool, migrate::Migrator};
use utoipa_axum::router::OpenApiRouter;

static MIGRATIONS: Migrator = sqlx::migrate!();

pub struct OrderService {
    pool: PgPool,
    /// `POST /orders` writes through it.
    placing: GroupCommit,
    metrics: SagaMetrics,
    /// How long a saga may take, from the order's creation (`DEADLINE_MS`, default 5 s).
    deadline: Duration,
    clock: Clock,
}

/// The order service's own settings.
pub struct Settings {
    /// `DEADLINE_MS`, default 5 s.
    pub deadline: Duration,
}

impl Service for OrderService {
    const NAME: &'static str = "order-service";
    const PORT: u16 = 8081;
    const DATABASE: &'static str = "saga_order";
    const PRODUCES: &'static [EventType] = &[
        EventType::OrderCreated,
        EventType::OrderPlaced,
        EventType::OrderRejected,
    ];
    /// An order is kept while its saga or its compensation is still running.
    const RETAINED: &'static [Table] = &[Table {
        name: "orders",
        key: "id",
        age: "created_at",
        finished: "status <> 'PENDING' AND compensation IS DISTINCT FROM 'PENDING'",
    }];

    type Settings = Settings;

    fn settings(vars: &Vars) -> anyhow::Result<Settings> {
        Ok(Settings {
            deadline: vars.millis("DEADLINE_MS", Duration::from_secs(5))?,
        })
    }

    fn migrations() -> &'static Migrator {
        &MIGRATIONS
    }

    fn build(context: &ServiceContext, settings: Settings) -> anyhow::Result<Self> {
        Ok(OrderService {
            pool: context.pool.clone(),
            placing: GroupCommit::new(context.pool.clone(), context.outbox.clone()),
            metrics: SagaMetrics::new(&context.metrics)?,
            deadline: settings.deadline,
            clock: context.clock.clone(),
        })
    }

    fn api() -> OpenApiRouter<Arc<Self>> {
        http::router()
    }
}

/// How sagas end, seen from the order, which is where they end.
pub struct SagaMetrics {
    app: &'static str,
    /// Sagas by terminal status.
    finished: IntCounterVec,
    /// From the order's creation to its terminal status, by status.
    duration: HistogramVec,
}

impl SagaMetrics {
    fn new(metrics: &Metrics) -> anyhow::Result<Self> {
        Ok(SagaMetrics {
            app: metrics.app(),
            finished: metrics.counter(
                "sagas_finished",
                "Sagas that reached a terminal status, by outcome.",
                &["outcome"],
            )?,
            duration: metrics.histogram(
                "saga_duration_seconds",
                "Time from order creation to its terminal status, by outcome.",
                &["outcome"],
                vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            )?,
        })
    }

    pub fn finished(&self, outcome: &str, seconds: f64) {
        self.finished.with_label_values(&[self.app, outcome]).inc();
        self.duration
            .with_label_values(&[self.app, outcome])
            .observe(seconds);
    }
}
