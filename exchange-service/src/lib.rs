//! The exchange service: turns an order's currency into points (`OrderCreated` →
//! `ExchangeSucceed`) and undoes that when the order is rejected (`OrderRejected` →
//! `ExchangeCompensated`).

pub mod domain;
pub mod fault;
mod handlers;
pub mod http;
pub mod store;

use std::sync::Arc;

use common_events::EventType;
use saga_runtime::{Clock, Service, ServiceContext, config::Vars, retention::Table};
use sqlx::{PgPool, migrate::Migrator};
use utoipa_axum::router::OpenApiRouter;

static MIGRATIONS: Migrator = sqlx::migrate!();

pub struct ExchangeService {
    pool: PgPool,
    hooks: fault::FaultHooks,
    clock: Clock,
}

impl Service for ExchangeService {
    const NAME: &'static str = "exchange-service";
    const PORT: u16 = 8082;
    const DATABASE: &'static str = "saga_exchange";
    const PRODUCES: &'static [EventType] =
        &[EventType::ExchangeSucceed, EventType::ExchangeCompensated];
    const RETAINED: &'static [Table] = &[Table {
        name: "exchanges",
        key: "order_id",
        age: "created_at",
        finished: "true",
    }];

    type Settings = fault::FaultHooks;

    fn settings(vars: &Vars) -> anyhow::Result<fault::FaultHooks> {
        fault::FaultHooks::from_vars(vars)
    }

    fn migrations() -> &'static Migrator {
        &MIGRATIONS
    }

    fn build(context: &ServiceContext, hooks: fault::FaultHooks) -> anyhow::Result<Self> {
        Ok(ExchangeService {
            pool: context.pool.clone(),
            hooks,
            clock: context.clock.clone(),
        })
    }

    fn api() -> OpenApiRouter<Arc<Self>> {
        http::router()
    }
}
