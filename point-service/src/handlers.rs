//! The point service's reactions to `ExchangeSucceed` and `ExchangeCompensated`.

use chrono::Utc;
use common_events::{Envelope, Event, EventType};
use rust_decimal::Decimal;
use saga_runtime::{EventHandler, Outcome, outbox};
use sqlx::PgConnection;

use crate::{
    PointService,
    domain::{self, Decision, Status, Transaction},
};

impl EventHandler for PointService {
    const CONSUMES: &'static [EventType] =
        &[EventType::ExchangeSucceed, EventType::ExchangeCompensated];

    async fn handle(&self, conn: &mut PgConnection, event: &Envelope) -> anyhow::Result<Outcome> {
        let row: Option<(String, Decimal, bool, Option<String>)> = sqlx::query_as(
            "SELECT status, point, compensated_at IS NOT NULL, user_id
             FROM point_transactions WHERE order_id = $1 FOR UPDATE",
        )
        .bind(event.order_id)
        .fetch_optional(&mut *conn)
        .await?;
        let transaction = match &row {
            Some((status, point, compensated, _)) => Some(Transaction {
                status: Status::parse(status)
                    .ok_or_else(|| anyhow::anyhow!("unknown status {status}"))?,
                point: *point,
                compensated: *compensated,
            }),
            None => None,
        };
        // The account whose balance may change: the holder when using, the ledger's when refunding.
        let user_id = match &event.event {
            Event::ExchangeSucceed { user_id, .. } => Some(user_id.clone()),
            _ => row.and_then(|(_, _, _, user_id)| user_id),
        };
        let balance: Option<Decimal> = match &user_id {
            Some(user_id) => {
                sqlx::query_scalar("SELECT balance FROM points WHERE user_id = $1 FOR UPDATE")
                    .bind(user_id)
                    .fetch_optional(&mut *conn)
                    .await?
            }
            None => None,
        };
        // Both rows stay locked until commit, so the expiry check and the change are one step.
        let decision = domain::decide(
            transaction,
            balance,
            &event.event,
            event.is_expired(Utc::now()),
        );
        match decision {
            Decision::Use { point, balance } => {
                let user_id = user_id.unwrap_or_default();
                set_balance(conn, &user_id, balance).await?;
                sqlx::query("INSERT INTO point_transactions (order_id, user_id, point, status) VALUES ($1, $2, $3, 'USED')")
                    .bind(event.order_id)
                    .bind(&user_id)
                    .bind(point)
                    .execute(&mut *conn)
                    .await?;
                outbox::append(
                    conn,
                    &event.follow_up(Event::PointUsed {
                        user_id,
                        point,
                        balance,
                    }),
                )
                .await?;
            }
            Decision::Refuse { reason } => {
                sqlx::query(
                    "INSERT INTO point_transactions (order_id, user_id, point, status, reason)
                     VALUES ($1, $2, 0, 'REJECTED', $3)",
                )
                .bind(event.order_id)
                .bind(&user_id)
                .bind(&reason)
                .execute(&mut *conn)
                .await?;
                tracing::info!(reason, "point use refused");
                outbox::append(conn, &event.follow_up(Event::PointUseFailed { reason })).await?;
            }
            Decision::Refund { point } => {
                if point > Decimal::ZERO {
                    let (Some(user_id), Some(balance)) = (&user_id, balance) else {
                        anyhow::bail!("no account to refund {point} points to");
                    };
                    set_balance(conn, user_id, balance + point).await?;
                }
                sqlx::query(
                    "INSERT INTO point_transactions (order_id, point, status, reason, compensated_at)
                     VALUES ($1, 0, 'REJECTED', 'compensated before use', now())
                     ON CONFLICT (order_id) DO UPDATE SET compensated_at = now(),
                         status = CASE WHEN point_transactions.status = 'USED' THEN 'REFUNDED'
                                       ELSE point_transactions.status END",
                )
                .bind(event.order_id)
                .execute(&mut *conn)
                .await?;
                outbox::append(conn, &event.follow_up(Event::PointRefunded { point })).await?;
            }
            Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
        }
        Ok(Outcome::Applied)
    }
}

async fn set_balance(conn: &mut PgConnection, user_id: &str, balance: Decimal) -> sqlx::Result<()> {
    sqlx::query("UPDATE points SET balance = $2, updated_at = now() WHERE user_id = $1")
        .bind(user_id)
        .bind(balance)
        .execute(conn)
        .await?;
    Ok(())
}
