//! The exchange's reactions to `OrderCreated` and `OrderRejected`.

use chrono::Utc;
use common_events::{Envelope, Event, EventType};
use rust_decimal::Decimal;
use saga_runtime::{EventHandler, Outcome, outbox};
use sqlx::PgConnection;

use crate::{
    ExchangeService,
    domain::{self, Decision, Exchange, Status},
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
        match domain::decide(exchange, &event.event, event.is_expired(Utc::now())) {
            Decision::Exchange { point } => {
                let Event::OrderCreated {
                    holder_id,
                    currency_id,
                    amount,
                } = &event.event
                else {
                    anyhow::bail!("exchange decided for {}", event.event.event_type());
                };
                self.hooks.after_check(currency_id.as_deref()).await;
                // The exchange is recorded only if the deadline still holds when the row is
                // written: the expiry check and the change it guards are one statement (SPEC §4
                // rule 5), so a wait since the first check cannot let an expired exchange through.
                let recorded = sqlx::query(
                    "INSERT INTO exchanges (order_id, user_id, currency_id, amount, point, status, deadline)
                     SELECT $1, $2, $3, $4, $5, 'EXCHANGED', $6 WHERE clock_timestamp() < $6
                     ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(event.order_id)
                .bind(holder_id)
                .bind(currency_id)
                .bind(amount)
                .bind(point)
                .bind(event.deadline)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                    == 1;
                if !recorded {
                    return Ok(Outcome::Ignored("expired during processing"));
                }
                let succeed = Event::ExchangeSucceed {
                    user_id: holder_id.clone(),
                    point,
                };
                outbox::append(conn, &event.follow_up(succeed)).await?;
            }
            Decision::Compensate { point } => {
                compensate(conn, event).await?;
                outbox::append(conn, &event.follow_up(Event::ExchangeCompensated { point }))
                    .await?;
            }
            Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
        }
        Ok(Outcome::Applied)
    }
}

fn currency_of(event: &Envelope) -> Option<&str> {
    match &event.event {
        Event::OrderCreated { currency_id, .. } => currency_id.as_deref(),
        _ => None,
    }
}

/// Marks the saga compensated, creating the row if nothing was ever exchanged.
async fn compensate(conn: &mut PgConnection, event: &Envelope) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO exchanges (order_id, status, deadline, compensated_at)
         VALUES ($1, 'COMPENSATED', $2, now())
         ON CONFLICT (order_id) DO UPDATE SET status = 'COMPENSATED', compensated_at = now()",
    )
    .bind(event.order_id)
    .bind(event.deadline)
    .execute(conn)
    .await?;
    Ok(())
}
