//! The point service's reactions to `ExchangeSucceed` and `ExchangeCompensated`: lock the
//! saga's ledger entry and the account it concerns, decide, write the change and its event
//! together.

use chrono::Utc;
use common_events::{Envelope, EventType};
use rust_decimal::Decimal;
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    PointService,
    domain::{self, Account, Decision, Entry, Status},
};

impl EventHandler for PointService {
    const CONSUMES: &'static [EventType] =
        &[EventType::ExchangeSucceed, EventType::ExchangeCompensated];

    async fn handle(&self, conn: &mut PgConnection, event: &Envelope) -> anyhow::Result<Outcome> {
        let entry = load_entry(conn, event.order_id).await?;
        let account = match domain::account_of(entry.as_ref(), &event.event) {
            Some(user_id) => {
                sqlx::query_scalar("SELECT balance FROM points WHERE user_id = $1 FOR UPDATE")
                    .bind(user_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|balance| Account {
                        user_id: user_id.to_string(),
                        balance,
                    })
            }
            None => None,
        };
        // Both rows stay locked until commit, so the expiry check and the change are one step.
        let decision = domain::decide(
            entry.as_ref(),
            account.as_ref(),
            &event.event,
            event.is_expired(Utc::now()),
        );
        let (entry, account, emit) = match decision {
            Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
            Decision::Inconsistent(problem) => anyhow::bail!(problem),
            Decision::Change {
                entry,
                account,
                emit,
            } => (entry, account, emit),
        };
        if let Some(account) = account {
            sqlx::query("UPDATE points SET balance = $2, updated_at = now() WHERE user_id = $1")
                .bind(&account.user_id)
                .bind(account.balance)
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(
            "INSERT INTO point_transactions (order_id, user_id, point, status, reason, compensated_at)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
             ON CONFLICT (order_id) DO UPDATE SET user_id = EXCLUDED.user_id,
                 point = EXCLUDED.point, status = EXCLUDED.status, reason = EXCLUDED.reason,
                 compensated_at = EXCLUDED.compensated_at",
        )
        .bind(event.order_id)
        .bind(&entry.user_id)
        .bind(entry.point)
        .bind(entry.status.as_str())
        .bind(&entry.reason)
        .bind(entry.compensated)
        .execute(&mut *conn)
        .await?;
        Ok(Outcome::Applied(Some(emit)))
    }
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    user_id: Option<String>,
    status: String,
    point: Decimal,
    reason: Option<String>,
    compensated: bool,
}

async fn load_entry(conn: &mut PgConnection, order_id: i64) -> anyhow::Result<Option<Entry>> {
    let row: Option<EntryRow> = sqlx::query_as(
        "SELECT user_id, status, point, reason, compensated_at IS NOT NULL AS compensated
         FROM point_transactions WHERE order_id = $1 FOR UPDATE",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(Entry {
            status: Status::parse(&row.status)
                .ok_or_else(|| anyhow::anyhow!("unknown status {}", row.status))?,
            user_id: row.user_id,
            point: row.point,
            reason: row.reason,
            compensated: row.compensated,
        })
    })
    .transpose()
}
