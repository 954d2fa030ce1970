//! The exchange's reactions to `OrderCreated` and `OrderRejected`: lock the saga's exchange,
//! decide, write the change and its event together.

use chrono::Utc;
use common_events::{Envelope, Event, EventType};
use rust_decimal::Decimal;
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    ExchangeService,
    domain::{self, Decision, EXPIRED_DURING_PROCESSING, Exchange, Status},
};

impl EventHandler for ExchangeService {
    const CONSUMES: &'static [EventType] = &[EventType::OrderCreated, EventType::OrderRejected];

    /// A hooked order waits 10 s on purpose; alone, it holds up no other saga.
    fn runs_alone(&self, event: &Envelope) -> bool {
        self.hooks.applies_to(currency_of(event))
    }

    async fn before_transaction(&self, event: &Envelope) {
        self.hooks.before_check(currency_of(event)).await;
    }

    async fn handle(&self, conn: &mut PgConnection, event: &Envelope) -> anyhow::Result<Outcome> {
        let row: Option<(String, Decimal)> =
            sqlx::query_as("SELECT status, point FROM exchanges WHERE order_id = $1 FOR UPDATE")
                .bind(event.order_id)
                .fetch_optional(&mut *conn)
                .await?;
        let exchange = match row {
            Some((status, point)) => Some(Exchange {
                status: Status::parse(&status)
                    .ok_or_else(|| anyhow::anyhow!("unknown status {status}"))?,
                point,
            }),
            None => None,
        };
        let emit = match domain::decide(exchange, &event.event, event.is_expired(Utc::now())) {
            Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
            Decision::Exchange { exchange, emit } => {
                self.hooks.after_check(currency_of(event)).await;
                // The decision's guard is checked by the statement that writes the row, not
                // before it: the deadline must still hold when the exchange is recorded (SPEC §4
                // rule 5), so no wait since the decision can let an expired exchange through.
                let recorded = sqlx::query(
                    "INSERT INTO exchanges (order_id, user_id, currency_id, amount, point, status, deadline)
                     SELECT $1, $2, $3, $4, $5, 'EXCHANGED', $6 WHERE clock_timestamp() < $6
                     ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(event.order_id)
                .bind(&exchange.user_id)
                .bind(&exchange.currency_id)
                .bind(exchange.amount)
                .bind(exchange.point)
                .bind(event.deadline)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    == 1;
                if !recorded {
                    return Ok(Outcome::Ignored(EXPIRED_DURING_PROCESSING));
                }
                emit
            }
            Decision::Compensate { emit } => {
                sqlx::query(
                    "INSERT INTO exchanges (order_id, status, deadline, compensated_at)
                     VALUES ($1, 'COMPENSATED', $2, now())
                     ON CONFLICT (order_id) DO UPDATE SET status = 'COMPENSATED', compensated_at = now()",
                )
                .bind(event.order_id)
                .bind(event.deadline)
                .execute(&mut *conn)
                .await?;
                emit
            }
        };
        Ok(Outcome::Applied(Some(emit)))
    }
}

fn currency_of(event: &Envelope) -> Option<&str> {
    match &event.event {
        Event::OrderCreated { currency_id, .. } => currency_id.as_deref(),
        _ => None,
    }
}
