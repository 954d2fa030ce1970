//! The deadline service's reactions: `OrderCreated` schedules the saga's deadline; `OrderPlaced`
//! and `OrderRejected` cancel it unless it has fired. A batch's deadlines are read, decided and
//! written together.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use common_events::{Envelope, EventType};
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    DeadlineService,
    domain::{self, Decision, Status},
};

impl EventHandler for DeadlineService {
    const CONSUMES: &'static [EventType] = &[
        EventType::OrderCreated,
        EventType::OrderPlaced,
        EventType::OrderRejected,
    ];

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[&Envelope],
    ) -> anyhow::Result<Vec<Outcome>> {
        let ids: Vec<i64> = events.iter().map(|e| e.order_id).collect();
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT order_id, status FROM deadlines
             WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut statuses = HashMap::with_capacity(rows.len());
        for (order_id, status) in rows {
            let status =
                Status::parse(&status).ok_or_else(|| anyhow::anyhow!("unknown status {status}"))?;
            statuses.insert(order_id, status);
        }
        let mut scheduled = Deadlines::default();
        let mut cancelled = Deadlines::default();
        let decisions: Vec<Decision> = events
            .iter()
            .map(|event| {
                let status = statuses.get(&event.order_id).copied();
                let decision = domain::decide(status, &event.event, event.deadline);
                match decision {
                    Decision::Schedule { deadline } => scheduled.push(event.order_id, deadline),
                    Decision::Cancel => cancelled.push(event.order_id, event.deadline),
                    Decision::Ignore(_) => {}
                }
                decision
            })
            .collect();
        // Each write returns the orders it changed: a deadline another instance scheduled, or
        // the timer fired, meanwhile is left alone and its event ignored.
        let scheduled = scheduled
            .write(
                conn,
                "INSERT INTO deadlines (order_id, deadline)
                 SELECT * FROM unnest($1::bigint[], $2::timestamptz[])
                 ON CONFLICT (order_id) DO NOTHING
                 RETURNING order_id",
            )
            .await?;
        let cancelled = cancelled
            .write(
                conn,
                "INSERT INTO deadlines (order_id, deadline, status, cancelled_at)
                 SELECT order_id, deadline, 'CANCELLED', now()
                 FROM unnest($1::bigint[], $2::timestamptz[]) AS new (order_id, deadline)
                 ON CONFLICT (order_id) DO UPDATE SET status = 'CANCELLED', cancelled_at = now()
                 WHERE deadlines.status = 'PENDING'
                 RETURNING order_id",
            )
            .await?;
        Ok(events
            .iter()
            .zip(decisions)
            .map(|(event, decision)| match decision {
                Decision::Ignore(reason) => Outcome::Ignored(reason),
                Decision::Schedule { .. } if !scheduled.contains(&event.order_id) => {
                    Outcome::Ignored("already scheduled")
                }
                Decision::Cancel if !cancelled.contains(&event.order_id) => {
                    Outcome::Ignored("already fired or cancelled")
                }
                Decision::Schedule { .. } | Decision::Cancel => Outcome::Applied(None),
            })
            .collect())
    }
}

/// Deadlines to write, as columns.
#[derive(Default)]
struct Deadlines {
    orders: Vec<i64>,
    deadlines: Vec<DateTime<Utc>>,
}

impl Deadlines {
    fn push(&mut self, order_id: i64, deadline: DateTime<Utc>) {
        self.orders.push(order_id);
        self.deadlines.push(deadline);
    }

    /// Runs `statement` with the deadlines as `$1` and `$2`; the orders it changed.
    async fn write(
        self,
        conn: &mut PgConnection,
        statement: &'static str,
    ) -> sqlx::Result<HashSet<i64>> {
        if self.orders.is_empty() {
            return Ok(HashSet::new());
        }
        let changed: Vec<i64> = sqlx::query_scalar(statement)
            .bind(self.orders)
            .bind(self.deadlines)
            .fetch_all(conn)
            .await?;
        Ok(changed.into_iter().collect())
    }
}
