//! The deadline service: keeps every saga's deadline durably and emits `DeadlineReached` when
//! one passes before the saga has ended (saga-rules §4 rule 7).

pub mod domain;
mod handlers;
pub mod http;
pub mod store;
mod timer;

use std::sync::Arc;

use common_events::EventType;
use prometheus::Histogram;
use saga_runtime::{Clock, Service, ServiceContext, config::Vars, outbox, retention::Table};
use sqlx::{PgPool, migrate::Migrator};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

static MIGRATIONS: Migrator = sqlx::migrate!();

pub struct DeadlineService {
    pool: PgPool,
    outbox: outbox::Outbox,
    clock: Clock,
    /// How long after its deadline each `DeadlineReached` was written.
    lateness: Histogram,
}

impl Service for DeadlineService {
    const NAME: &'static str = "deadline-service";
    const PORT: u16 = 8084;
    const DATABASE: &'static str = "saga_deadline";
    const PRODUCES: &'static [EventType] = &[EventType::DeadlineReached];
    /// A deadline is kept while it may still fire.
    const RETAINED: &'static [Table] = &[Table {
        name: "deadlines",
        key: "order_id",
        age: "created_at",
        finished: "status <> 'PENDING'",
    }];

    type Settings = ();

    fn settings(_vars: &Vars) -> anyhow::Result<()> {
        Ok(())
    }

    fn migrations() -> &'static Migrator {
        &MIGRATIONS
    }

    fn build(context: &ServiceContext, _settings: ()) -> anyhow::Result<Self> {
        let lateness = context.metrics.histogram(
            "deadline_lateness_seconds",
            "How long after its deadline each DeadlineReached was written.",
            &[],
            vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
            ],
        )?;
        Ok(DeadlineService {
            pool: context.pool.clone(),
            outbox: context.outbox.clone(),
            clock: context.clock.clone(),
            lateness: lateness.with_label_values(&[context.metrics.app()]),
        })
    }

    fn api() -> OpenApiRouter<Arc<Self>> {
        http::router()
    }

    fn background(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Option<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
        let timer = timer::Timer {
            pool: self.pool.clone(),
            outbox: self.outbox.clone(),
            clock: self.clock.clone(),
            lateness: self.lateness.clone(),
        };
        Some(timer.run(shutdown))
    }
}
