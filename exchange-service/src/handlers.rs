//! The exchange's reactions to `OrderCreated` and `OrderRejected`: lock the batch's exchanges,
//! decide each, write the changes and their events together.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use common_events::{Envelope, Event, EventType};
use rust_decimal::Decimal;
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    ExchangeService,
    domain::{self, Decision, EXPIRED_DURING_PROCESSING, Exchange, NewExchange, Status},
};

impl EventHandler for ExchangeService {
    const CONSUMES: &'static [EventType] = &[EventType::OrderCreated, EventType::OrderRejected];

    fn runs_alone(&self, event: &Envelope) -> bool {
        self.hooks.applies_to(currency_of(event))
    }

    async fn before_transaction(&self, event: &Envelope) {
        self.hooks.before_check(currency_of(event)).await;
    }

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[&Envelope],
    ) -> anyhow::Result<Vec<Outcome>> {
        let ids: Vec<i64> = events.iter().map(|e| e.order_id).collect();
        let rows: Vec<(i64, String, Decimal)> = sqlx::query_as(
            "SELECT order_id, status, point FROM exchanges
             WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut exchanges = HashMap::with_capacity(rows.len());
        for (order_id, status, point) in rows {
            let status =
                Status::parse(&status).ok_or_else(|| anyhow::anyhow!("unknown status {status}"))?;
            exchanges.insert(order_id, Exchange { status, point });
        }
        let now = Utc::now();
        let mut exchanged = Exchanged::default();
        let mut compensated = Vec::new();
        let mut decided = Vec::with_capacity(events.len());
        for event in events {
            let exchange = exchanges.get(&event.order_id).copied();
            let decision = domain::decide(exchange, &event.event, event.is_expired(now));
            decided.push(match decision {
                Decision::Ignore(reason) => Outcome::Ignored(reason),
                Decision::Exchange { exchange, emit } => {
                    if self.hooks.applies_to(currency_of(event)) {
                        // The hook holds this transaction open on purpose: PostgreSQL must not
                        // end it as a stalled one (see saga_runtime::db::options).
                        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
                            .execute(&mut *conn)
                            .await?;
                    }
                    self.hooks.after_check(currency_of(event)).await;
                    exchanged.push(event, exchange);
                    Outcome::Applied(Some(emit))
                }
                Decision::Compensate { emit } => {
                    compensated.push((event.order_id, event.deadline));
                    Outcome::Applied(Some(emit))
                }
            });
        }
        let refused = exchanged.write(conn).await?;
        if !compensated.is_empty() {
            let (orders, deadlines): (Vec<i64>, Vec<DateTime<Utc>>) =
                compensated.into_iter().unzip();
            sqlx::query(
                "INSERT INTO exchanges (order_id, status, deadline, compensated_at)
                 SELECT order_id, 'COMPENSATED', deadline, now()
                 FROM unnest($1::bigint[], $2::timestamptz[]) AS new (order_id, deadline)
                 ON CONFLICT (order_id) DO UPDATE SET status = 'COMPENSATED', compensated_at = now()",
            )
            .bind(orders)
            .bind(deadlines)
            .execute(&mut *conn)
            .await?;
        }
        Ok(events
            .iter()
            .zip(decided)
            .map(|(event, outcome)| {
                if refused.contains(&event.order_id) {
                    Outcome::Ignored(EXPIRED_DURING_PROCESSING)
                } else {
                    outcome
                }
            })
            .collect())
    }
}

/// Exchanges to record, as columns.
#[derive(Default)]
struct Exchanged {
    orders: Vec<i64>,
    users: Vec<String>,
    currencies: Vec<Option<String>>,
    amounts: Vec<Decimal>,
    points: Vec<Decimal>,
    deadlines: Vec<DateTime<Utc>>,
}

impl Exchanged {
    fn push(&mut self, event: &Envelope, exchange: NewExchange) {
        self.orders.push(event.order_id);
        self.users.push(exchange.user_id);
        self.currencies.push(exchange.currency_id);
        self.amounts.push(exchange.amount);
        self.points.push(exchange.point);
        self.deadlines.push(event.deadline);
    }

    /// Records the exchanges whose deadline still holds as they are written (saga-rules §4 rule 5);
    /// the orders it refused.
    async fn write(self, conn: &mut PgConnection) -> sqlx::Result<HashSet<i64>> {
        if self.orders.is_empty() {
            return Ok(HashSet::new());
        }
        let orders = self.orders.clone();
        let recorded: HashSet<i64> = sqlx::query_scalar(
            "INSERT INTO exchanges (order_id, user_id, currency_id, amount, point, status, deadline)
             SELECT order_id, user_id, currency_id, amount, point, 'EXCHANGED', deadline
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[], $5::numeric[],
                         $6::timestamptz[])
                 AS new (order_id, user_id, currency_id, amount, point, deadline)
             WHERE clock_timestamp() < deadline
             ON CONFLICT (order_id) DO NOTHING
             RETURNING order_id",
        )
        .bind(self.orders)
        .bind(self.users)
        .bind(self.currencies)
        .bind(self.amounts)
        .bind(self.points)
        .bind(self.deadlines)
        .fetch_all(conn)
        .await?
        .into_iter()
        .collect();
        Ok(orders
            .into_iter()
            .filter(|order| !recorded.contains(order))
            .collect())
    }
}

fn currency_of(event: &Envelope) -> Option<&str> {
    match &event.event {
        Event::OrderCreated { currency_id, .. } => currency_id.as_deref(),
        _ => None,
    }
}
