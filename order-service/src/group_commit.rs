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

use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use common_events::{Envelope, Event};
use rust_decimal::Decimal;
use saga_runtime::{db::Held, http::ApiError, outbox};
use sqlx::{Connection, PgPool, Postgres, Transaction};
use tokio::sync::oneshot::{self, error::TryRecvError};

use crate::http::{OrderView, columns};

/// An order to write.
pub struct Order {
    pub holder_id: String,
    pub currency_id: Option<String>,
    pub amount: Decimal,
    pub deadline: DateTime<Utc>,
}

type Reply = Result<OrderView, String>;

pub struct GroupCommit {
    queue: Mutex<Vec<(Order, oneshot::Sender<Reply>)>>,
    /// Whoever holds it writes, on the connection the writers keep.
    writing: tokio::sync::Mutex<Held>,
    wake: outbox::Wake,
}

impl GroupCommit {
    pub fn new(pool: PgPool, wake: outbox::Wake) -> Self {
        GroupCommit {
            queue: Mutex::default(),
            writing: tokio::sync::Mutex::new(Held::new(pool)),
            wake,
        }
    }

    /// Writes `order` with its `OrderCreated`, with whatever else is queued; returns once they
    /// are committed.
    pub async fn place(&self, order: Order) -> Result<OrderView, ApiError> {
        let (reply, mut answer) = oneshot::channel();
        self.queue().push((order, reply));
        let mut writing = self.writing.lock().await;
        let reply = match answer.try_recv() {
            Ok(reply) => reply,
            // The holder that took this order was cancelled (its client went away) before it
            // answered: the order may or may not be written.
            Err(TryRecvError::Closed) => Err("the batch this order was in was abandoned".into()),
            Err(TryRecvError::Empty) => {
                let (orders, replies): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut *self.queue()).into_iter().unzip();
                match write(&mut writing, orders).await {
                    Ok(written) => {
                        self.wake.committed();
                        for (reply, order) in replies.into_iter().zip(written) {
                            let _ = reply.send(Ok(order));
                        }
                    }
                    Err(error) => {
                        let message = format!("{error:#}");
                        for reply in replies {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
                drop(writing);
                answer
                    .await
                    .unwrap_or_else(|_| Err("the order was not answered".into()))
            }
        };
        reply.map_err(|message| ApiError::Internal(anyhow::anyhow!(message)))
    }

    fn queue(&self) -> MutexGuard<'_, Vec<(Order, oneshot::Sender<Reply>)>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes `orders` and their `OrderCreated` events in one transaction; the orders as written,
/// in the same order.
async fn write(conn: &mut Held, orders: Vec<Order>) -> anyhow::Result<Vec<OrderView>> {
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
        let written = insert(tx, orders).await?;
        conn.keep(kept);
        return Ok(written);
    }
}

/// Inserts `orders` and their `OrderCreated` events in `tx`, and commits.
async fn insert(
    mut tx: Transaction<'_, Postgres>,
    orders: Vec<Order>,
) -> anyhow::Result<Vec<OrderView>> {
    let holders: Vec<&str> = orders.iter().map(|o| o.holder_id.as_str()).collect();
    let currencies: Vec<Option<&str>> = orders.iter().map(|o| o.currency_id.as_deref()).collect();
    let amounts: Vec<Decimal> = orders.iter().map(|o| o.amount).collect();
    let deadlines: Vec<DateTime<Utc>> = orders.iter().map(|o| o.deadline).collect();
    // RETURNING gives the rows in the order they were inserted: the arrays' order.
    let written: Vec<OrderView> = sqlx::query_as(concat!(
        "INSERT INTO orders (holder_id, currency_id, amount, deadline)
         SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::timestamptz[])
         RETURNING ",
        columns!()
    ))
    .bind(&holders)
    .bind(&currencies)
    .bind(&amounts)
    .bind(&deadlines)
    .fetch_all(&mut *tx)
    .await?;
    anyhow::ensure!(
        written.len() == orders.len(),
        "{} orders written of {}",
        written.len(),
        orders.len()
    );
    let created: Vec<Envelope> = written
        .iter()
        .zip(orders)
        .map(|(view, order)| {
            Envelope::new(
                view.id,
                order.deadline,
                Event::OrderCreated {
                    holder_id: order.holder_id,
                    currency_id: order.currency_id,
                    amount: order.amount,
                },
            )
        })
        .collect();
    outbox::append(&mut tx, &created).await?;
    tx.commit().await?;
    for event in &created {
        tracing::info!(order.id = event.order_id, event.id = %event.event_id, "order created");
    }
    Ok(written)
}
