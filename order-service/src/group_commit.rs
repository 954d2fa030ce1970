//! Group commit for `POST /orders`. Requests that come while orders are being written queue
//! up, and the next writer writes all of them: one transaction, one statement per table, one
//! commit, where each request would otherwise pay for its own. Nothing waits on purpose: a
//! request that finds no writer busy is written at once, and batches grow only while the
//! database is busy. Each request still answers only after the commit that made its order and
//! its `OrderCreated` durable.
//!
//! There is no writer task: whichever waiting request gets the write lock writes the queue,
//! its own order among it unless an earlier holder already wrote it. So nothing outlives the
//! requests, and a service that stops has nothing to drain.
//!
//! An order placed with an idempotency key that an order already has is not written again: it
//! is answered with that order, found before it queues or, when the other was written
//! meanwhile (in the same batch, or by another instance), by the insert itself.

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use common_events::Envelope;
use rust_decimal::Decimal;
use saga_runtime::{db::Held, http::ApiError, outbox};
use sqlx::{Connection, PgPool, Postgres, Transaction};
use tokio::sync::oneshot::{self, error::TryRecvError};

use crate::{
    domain::{NewOrder, Placed as PlacedOrder},
    view::{OrderView, columns},
};

/// An order to write.
pub struct Order {
    pub new: NewOrder,
    /// What placing it made: its first state, deadline and `OrderCreated`.
    pub placed: PlacedOrder,
    /// The client's `Idempotency-Key`: an order already written with it is answered instead.
    pub idempotency_key: Option<String>,
}

impl Order {
    /// Whether `written` is this order, as a retry with the same key must be.
    fn same_as(&self, written: &OrderView) -> bool {
        written.holder_id == self.new.holder_id
            && written.currency_id == self.new.currency_id
            && written.amount == self.new.amount
    }
}

/// How a placed order was answered.
pub enum Placed {
    /// Written now, its saga started.
    Created(OrderView),
    /// Written by an earlier request with the same `Idempotency-Key`: no second saga.
    Replayed(OrderView),
}

type Reply = Result<Placed, ApiError>;

pub struct GroupCommit {
    queue: Mutex<Vec<(Order, oneshot::Sender<Reply>)>>,
    /// Whoever holds it writes, on the connection the writers keep.
    writing: tokio::sync::Mutex<Held>,
    pool: PgPool,
    outbox: outbox::Outbox,
}

impl GroupCommit {
    pub fn new(pool: PgPool, outbox: outbox::Outbox) -> Self {
        GroupCommit {
            queue: Mutex::default(),
            writing: tokio::sync::Mutex::new(Held::new(pool.clone())),
            pool,
            outbox,
        }
    }

    /// Writes `order` with its `OrderCreated`, with whatever else is queued; returns once they
    /// are committed.
    pub async fn place(&self, order: Order) -> Reply {
        if let Some(key) = &order.idempotency_key
            && let Some(written) = by_key(&self.pool, key).await?
        {
            return replay(&order, written);
        }
        let (reply, mut answer) = oneshot::channel();
        self.queue().push((order, reply));
        let mut writing = self.writing.lock().await;
        match answer.try_recv() {
            Ok(reply) => reply,
            // The holder that took this order was cancelled (its client went away) before it
            // answered: the order may or may not be written.
            Err(TryRecvError::Closed) => Err(internal("the batch this order was in was abandoned")),
            Err(TryRecvError::Empty) => {
                let (orders, replies): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut *self.queue()).into_iter().unzip();
                match write(&mut writing, &self.outbox, orders).await {
                    Ok(written) => {
                        for (reply, placed) in replies.into_iter().zip(written) {
                            let _ = reply.send(placed);
                        }
                    }
                    Err(error) => {
                        let message = format!("{error:#}");
                        for reply in replies {
                            let _ = reply.send(Err(internal(&message)));
                        }
                    }
                }
                drop(writing);
                answer
                    .await
                    .unwrap_or_else(|_| Err(internal("the order was not answered")))
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, Vec<(Order, oneshot::Sender<Reply>)>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes `orders` and their `OrderCreated` events in one transaction; each order's answer, in
/// the same order.
async fn write(
    conn: &mut Held,
    outbox: &outbox::Outbox,
    orders: Vec<Order>,
) -> anyhow::Result<Vec<Reply>> {
    let mut first_try = true;
    loop {
        let mut kept = conn.take().await?;
        let tx = match kept.begin().await {
            Ok(tx) => tx,
            // The kept connection died with the database since its last use. Nothing was
            // done, so the orders go to a connection from the pool, which checks it first.
            Err(_) if first_try => {
                first_try = false;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let written = insert(tx, outbox, orders).await?;
        conn.keep(kept);
        return Ok(written);
    }
}

/// An order as written, with the key it was written under.
#[derive(sqlx::FromRow)]
struct Written {
    #[sqlx(flatten)]
    view: OrderView,
    idempotency_key: Option<String>,
}

/// Inserts `orders` and their `OrderCreated` events in `tx`, and commits. An order whose key
/// another order already has (written by an earlier batch, another instance, or earlier in
/// this batch) is not inserted: it is answered with that order.
async fn insert(
    mut tx: Transaction<'_, Postgres>,
    outbox: &outbox::Outbox,
    orders: Vec<Order>,
) -> anyhow::Result<Vec<Reply>> {
    let holders: Vec<&str> = orders.iter().map(|o| o.new.holder_id.as_str()).collect();
    let currencies: Vec<Option<&str>> = orders
        .iter()
        .map(|o| o.new.currency_id.as_deref())
        .collect();
    let amounts: Vec<Decimal> = orders.iter().map(|o| o.new.amount).collect();
    let statuses: Vec<&str> = orders
        .iter()
        .map(|o| o.placed.order.status.as_str())
        .collect();
    let deadlines: Vec<DateTime<Utc>> = orders.iter().map(|o| o.placed.deadline).collect();
    let keys: Vec<Option<&str>> = orders
        .iter()
        .map(|o| o.idempotency_key.as_deref())
        .collect();
    // RETURNING gives the inserted rows in the order they were inserted: the arrays' order,
    // less the orders whose key was taken.
    let written: Vec<Written> = sqlx::query_as(concat!(
        "INSERT INTO orders (holder_id, currency_id, amount, status, deadline, idempotency_key)
         SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[],
                              $5::timestamptz[], $6::text[])
         ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ",
        columns!(),
        ", idempotency_key"
    ))
    .bind(&holders)
    .bind(&currencies)
    .bind(&amounts)
    .bind(&statuses)
    .bind(&deadlines)
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await?;
    let mut written = written.into_iter().peekable();
    let mut placed: Vec<Option<OrderView>> = Vec::with_capacity(orders.len());
    for order in &orders {
        let ours = written
            .next_if(|row| row.idempotency_key == order.idempotency_key)
            .map(|row| row.view);
        placed.push(ours);
    }
    anyhow::ensure!(written.next().is_none(), "more orders written than placed");
    let created: Vec<Envelope> = placed
        .iter()
        .zip(&orders)
        .filter_map(|(view, order)| {
            Some(Envelope::new(
                view.as_ref()?.id,
                order.placed.deadline,
                order.placed.created.clone(),
            ))
        })
        .collect();
    let taken: Vec<&str> = placed
        .iter()
        .zip(&keys)
        .filter(|(view, _)| view.is_none())
        .filter_map(|(_, key)| *key)
        .collect();
    let earlier: Vec<Written> = if taken.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            ", idempotency_key FROM orders WHERE idempotency_key = ANY($1)"
        ))
        .bind(&taken)
        .fetch_all(&mut *tx)
        .await?
    };
    outbox.commit(tx, &created).await?;
    for event in &created {
        tracing::info!(order.id = event.order_id, event.id = %event.event_id, "order created");
    }
    let replies = placed
        .into_iter()
        .zip(&orders)
        .map(|(view, order)| match view {
            Some(view) => Ok(Placed::Created(view)),
            None => {
                let key = order.idempotency_key.as_deref();
                let found = earlier
                    .iter()
                    .find(|row| row.idempotency_key.as_deref() == key)
                    .map(|row| row.view.clone());
                match found {
                    Some(view) => replay(order, view),
                    None => Err(internal(
                        "an order was neither written nor found by its key",
                    )),
                }
            }
        })
        .collect();
    Ok(replies)
}

/// The order written with `key`, if any.
async fn by_key(pool: &PgPool, key: &str) -> Result<Option<OrderView>, ApiError> {
    let written = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM orders WHERE idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(written)
}

/// The answer to a retry of `order` whose key names `written`: that order, if it is the same
/// one; a 422 if the key was used for another.
fn replay(order: &Order, written: OrderView) -> Reply {
    if order.same_as(&written) {
        Ok(Placed::Replayed(written))
    } else {
        Err(ApiError::Unprocessable(format!(
            "Idempotency-Key was used for order {} with another body",
            written.id
        )))
    }
}

fn internal(message: &str) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("{message}"))
}
