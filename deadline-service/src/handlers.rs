//! The deadline service's reactions: `OrderCreated` schedules the saga's deadline; `OrderPlaced`
//! and `OrderRejected` cancel it unless it has fired. A batch's deadlines are read, decided and
//! written together.

use common_events::{Envelope, EventType};
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    DeadlineService,
    domain::{self, Decision},
    store::{self, Deadlines},
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
        let statuses = store::lock(conn, &ids).await?;
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
        let scheduled = scheduled.schedule(conn).await?;
        let cancelled = cancelled.cancel(conn).await?;
        Ok(events
            .iter()
            .zip(decisions)
            .map(|(event, decision)| {
                let changed = match decision {
                    Decision::Schedule { .. } => scheduled.contains(&event.order_id),
                    Decision::Cancel => cancelled.contains(&event.order_id),
                    Decision::Ignore(_) => false,
                };
                if changed {
                    Outcome::Applied(None)
                } else {
                    Outcome::Ignored(domain::refused(decision))
                }
            })
            .collect())
    }
}
