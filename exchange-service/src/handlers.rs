//! The exchange's reactions to `OrderCreated` and `OrderRejected`: lock the batch's exchanges,
//! decide each, write the changes and their events together.

use common_events::{Envelope, Event, EventType};
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    ExchangeService,
    domain::{self, Decision, EXPIRED_DURING_PROCESSING},
    store::{self, Exchanges},
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
        let exchanges = store::lock(conn, &ids).await?;
        let now = self.clock.now();
        let mut exchanged = Exchanges::default();
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
                    exchanged.push(event.order_id, event.deadline, exchange);
                    Outcome::Applied(Some(emit))
                }
                Decision::Compensate { emit } => {
                    compensated.push((event.order_id, event.deadline));
                    Outcome::Applied(Some(emit))
                }
            });
        }
        let refused = exchanged.record(conn).await?;
        store::compensate(conn, &compensated).await?;
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

fn currency_of(event: &Envelope) -> Option<&str> {
    match &event.event {
        Event::OrderCreated { currency_id, .. } => currency_id.as_deref(),
        _ => None,
    }
}
