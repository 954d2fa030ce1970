//! Waiting for sagas to end, and judging them once they have with the invariants of SPEC §4
//! ([`harness::invariants`], the checker the chaos run uses).

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use harness::{
    api::{Account, Order},
    invariants::{self, Observed, Outcome, Saga},
    topic::{Marks, Topic},
    walkthrough::{Exchange, Walkthrough},
};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{Stack, wait_until};

/// The events of an approved saga, in the order they are published.
pub const APPROVED_EVENTS: [&str; 4] = [
    "OrderCreated",
    "ExchangeSucceed",
    "PointUsed",
    "OrderPlaced",
];

/// The events of a saga rejected for its points, in the order they are published.
pub const REJECTED_FOR_POINTS_EVENTS: [&str; 6] = [
    "OrderCreated",
    "ExchangeSucceed",
    "PointUseFailed",
    "OrderRejected",
    "ExchangeCompensated",
    "PointRefunded",
];

/// The events of a saga rejected by its deadline before the exchange acted on it.
pub const REJECTED_BY_DEADLINE_EVENTS: [&str; 5] = [
    "OrderCreated",
    "DeadlineReached",
    "OrderRejected",
    "ExchangeCompensated",
    "PointRefunded",
];

/// How a set of sagas ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub approved: usize,
    pub rejected: usize,
}

impl Stack {
    /// Waits until the order's status is final (not PENDING) and returns the order.
    pub async fn settled(&self, order_id: i64, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_for_order(order_id, timeout, "left PENDING", |order| {
            order["status"] != "PENDING" && !order["status"].is_null()
        })
        .await
    }

    /// Waits until the order has the given status and its compensation (if any) is done.
    pub async fn finished(
        &self,
        order_id: i64,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_for_order(order_id, timeout, status, |order| {
            let compensated = order["compensation"].is_null() || order["compensation"] == "DONE";
            order["status"] == status && compensated
        })
        .await
    }

    /// Waits until every one of `orders` (all of `holder`, whose account opened with `initial`
    /// points) has ended and finished compensating, then checks the invariants of SPEC §4 on
    /// what the services' APIs and the topic show.
    pub async fn settle_and_check(
        &self,
        holder: &str,
        initial: i64,
        orders: &[i64],
        timeout: Duration,
    ) -> anyhow::Result<Settled> {
        let mut sagas = Vec::new();
        for &order_id in orders {
            let order = self
                .wait_for_order(order_id, timeout, "an end", |order| {
                    serde_json::from_value::<Order>(order.clone())
                        .is_ok_and(|order| invariants::outcome(&order) != Outcome::Unsettled)
                })
                .await?;
            sagas.push(Saga {
                order: serde_json::from_value(order)?,
                exchange: (self.get_record("exchange", &format!("/exchanges/{order_id}"))).await?,
                transaction: (self.get_record("point", &format!("/transactions/{order_id}")))
                    .await?,
            });
        }
        let account: Account = (self.get_record("point", &format!("/points/{holder}")))
            .await?
            .with_context(|| format!("{holder} has no point account"))?;
        let topic = Topic {
            bootstrap: self.servers.kafka.clone(),
            name: self.topic.clone(),
        };
        let events = tokio::task::spawn_blocking(move || topic.read_since(&Marks::new())).await??;
        let observed = Observed {
            sagas,
            created: orders.to_vec(),
            balances: BTreeMap::from([(holder.to_string(), account.point)]),
            initial: Decimal::from(initial),
            events,
        };
        let violations = invariants::check(&observed);
        if !violations.is_empty() {
            bail!("the invariants do not hold: {violations:?}");
        }
        let count = |outcome| {
            (observed.sagas.iter())
                .filter(|saga| invariants::outcome(&saga.order) == outcome)
                .count()
        };
        Ok(Settled {
            approved: count(Outcome::Approved),
            rejected: count(Outcome::Rejected),
        })
    }

    /// Polls the order until `reached` holds for it, and returns it; `what` names the state
    /// waited for in the error.
    async fn wait_for_order(
        &self,
        order_id: i64,
        timeout: Duration,
        what: &str,
        reached: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let reached = &reached;
        wait_until(timeout, || async move {
            let (_, order) = self
                .get("order", &format!("/orders/{order_id}"))
                .await
                .ok()?;
            reached(&order).then_some(order)
        })
        .await
        .with_context(|| {
            format!(
                "order {order_id} never reached {what}; logs in {}",
                self.logs.display()
            )
        })
    }
}

impl Stack {
    /// Walks the seed's walkthrough ([`harness::walkthrough`], as `scripts/demo` does) through
    /// the stack's gateway, which must be running, stopping and restarting the stack's
    /// exchange for the downtime scenario. The services need `FAULT_HOOKS=on`.
    pub async fn walk_the_seed(&mut self) -> anyhow::Result<Walkthrough> {
        let mut walkthrough = Walkthrough::new(&self.url("gateway"), &self.url("point"), false);
        walkthrough.run("jjy", &mut ExchangeOf(self)).await?;
        Ok(walkthrough)
    }
}

/// The exchange of a [`Stack`], stopped with SIGTERM and started again.
struct ExchangeOf<'a>(&'a mut Stack);

impl Exchange for ExchangeOf<'_> {
    async fn stop(&mut self) -> anyhow::Result<()> {
        self.0.stop("exchange").await?;
        Ok(())
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        self.0.restart("exchange", &[]).await
    }
}
