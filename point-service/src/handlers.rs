//! The point service's reactions to `ExchangeSucceed` and `ExchangeCompensated`: lock the
//! batch's ledger entries and the accounts they concern, decide each event in turn (two sagas
//! of one holder see each other's change), write the changes and their events together.

use std::collections::{BTreeSet, HashMap};

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

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[&Envelope],
    ) -> anyhow::Result<Vec<Outcome>> {
        let orders: Vec<i64> = events.iter().map(|e| e.order_id).collect();
        let entries = load_entries(conn, &orders).await?;
        let holders: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| domain::account_of(entries.get(&e.order_id), &e.event))
            .collect();
        let holders: Vec<&str> = holders.into_iter().collect();
        // Locked in a fixed order, so that two batches never wait for each other in a cycle.
        let mut accounts: HashMap<String, Decimal> = sqlx::query_as(
            "SELECT user_id, balance FROM points
             WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
        )
        .bind(&holders)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let now = self.clock.now();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut written = Entries::default();
        let mut changed = BTreeSet::new();
        for event in events {
            let entry = entries.get(&event.order_id);
            let account = domain::account_of(entry, &event.event).and_then(|user_id| {
                let balance = *accounts.get(user_id)?;
                Some(Account {
                    user_id: user_id.to_string(),
                    balance,
                })
            });
            let expired = event.is_expired(now);
            match domain::decide(entry, account.as_ref(), &event.event, expired) {
                Decision::Ignore(reason) => outcomes.push(Outcome::Ignored(reason)),
                Decision::Inconsistent(problem) => {
                    anyhow::bail!("{problem} (order {})", event.order_id)
                }
                Decision::Change {
                    entry,
                    account,
                    emit,
                } => {
                    if let Some(account) = account {
                        accounts.insert(account.user_id.clone(), account.balance);
                        changed.insert(account.user_id);
                    }
                    written.push(event.order_id, entry);
                    outcomes.push(Outcome::Applied(Some(emit)));
                }
            }
        }
        if !changed.is_empty() {
            let balances: Vec<Decimal> = changed.iter().map(|user| accounts[user]).collect();
            let users: Vec<String> = changed.into_iter().collect();
            sqlx::query(
                "UPDATE points SET balance = new.balance, updated_at = now()
                 FROM unnest($1::text[], $2::numeric[]) AS new (user_id, balance)
                 WHERE points.user_id = new.user_id",
            )
            .bind(users)
            .bind(balances)
            .execute(&mut *conn)
            .await?;
        }
        written.write(conn).await?;
        Ok(outcomes)
    }
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    order_id: i64,
    user_id: Option<String>,
    status: String,
    point: Decimal,
    reason: Option<String>,
    compensated: bool,
}

async fn load_entries(
    conn: &mut PgConnection,
    orders: &[i64],
) -> anyhow::Result<HashMap<i64, Entry>> {
    let rows: Vec<EntryRow> = sqlx::query_as(
        "SELECT order_id, user_id, status, point, reason, compensated_at IS NOT NULL AS compensated
         FROM point_transactions WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
    )
    .bind(orders)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let status = Status::parse(&row.status)
                .ok_or_else(|| anyhow::anyhow!("unknown status {}", row.status))?;
            let entry = Entry {
                status,
                user_id: row.user_id,
                point: row.point,
                reason: row.reason,
                compensated: row.compensated,
            };
            Ok((row.order_id, entry))
        })
        .collect()
}

/// Ledger entries to write, as columns.
#[derive(Default)]
struct Entries {
    orders: Vec<i64>,
    users: Vec<Option<String>>,
    points: Vec<Decimal>,
    statuses: Vec<&'static str>,
    reasons: Vec<Option<String>>,
    compensated: Vec<bool>,
}

impl Entries {
    fn push(&mut self, order_id: i64, entry: Entry) {
        self.orders.push(order_id);
        self.users.push(entry.user_id);
        self.points.push(entry.point);
        self.statuses.push(entry.status.as_str());
        self.reasons.push(entry.reason);
        self.compensated.push(entry.compensated);
    }

    async fn write(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        if self.orders.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO point_transactions (order_id, user_id, point, status, reason, compensated_at)
             SELECT order_id, user_id, point, status, reason, CASE WHEN compensated THEN now() END
             FROM unnest($1::bigint[], $2::text[], $3::numeric[], $4::text[], $5::text[],
                         $6::boolean[])
                 AS new (order_id, user_id, point, status, reason, compensated)
             ON CONFLICT (order_id) DO UPDATE SET user_id = EXCLUDED.user_id,
                 point = EXCLUDED.point, status = EXCLUDED.status, reason = EXCLUDED.reason,
                 compensated_at = EXCLUDED.compensated_at",
        )
        .bind(self.orders)
        .bind(self.users)
        .bind(self.points)
        .bind(self.statuses)
        .bind(self.reasons)
        .bind(self.compensated)
        .execute(conn)
        .await?;
        Ok(())
    }
}
