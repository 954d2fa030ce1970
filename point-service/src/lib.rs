//! The point service: holds point accounts, takes points for an exchanged order
//! (`ExchangeSucceed` → `PointUsed` or `PointUseFailed`) and refunds them when the exchange is
//! compensated (`ExchangeCompensated` → `PointRefunded`).

pub mod domain;
mod handlers;
pub mod http;

use std::sync::Arc;

use common_events::EventType;
use saga_runtime::{Clock, Service, ServiceContext, config::Vars, retention::Table};
use sqlx::{PgPool, migrate::Migrator};
use utoipa_axum::router::OpenApiRouter;

static MIGRATIONS: Migrator = sqlx::migrate!();

pub struct PointService {
    pool: PgPool,
    clock: Clock,
}

impl Service for PointService {
    const NAME: &'static str = "point-service";
    const PORT: u16 = 8083;
    const DATABASE: &'static str = "saga_point";
    const PRODUCES: &'static [EventType] = &[
        EventType::PointUsed,
        EventType::PointUseFailed,
        EventType::PointRefunded,
    ];
    const RETAINED: &'static [Table] = &[Table {
        name: "point_transactions",
        key: "order_id",
        age: "created_at",
        finished: "true",
    }];

    type Settings = ();

    fn settings(_vars: &Vars) -> anyhow::Result<()> {
        Ok(())
    }

    fn migrations() -> &'static Migrator {
        &MIGRATIONS
    }

    fn build(context: &ServiceContext, _settings: ()) -> anyhow::Result<Self> {
        Ok(PointService {
            pool: context.pool.clone(),
            clock: context.clock.clone(),
        })
    }

    fn api() -> OpenApiRouter<Arc<Self>> {
        http::router()
    }
}
