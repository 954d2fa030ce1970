//! A client of the gateway's public API, typed for what a load run needs. Every call has a
//! timeout, so a stack in trouble slows a run down but never hangs it.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use harness::api::{Account, Order, Record};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The orders a holder can list in one request (the API's largest page).
pub const MAX_PAGE: usize = 1000;
/// Requests in flight at once when reading many things.
pub const READERS: usize = 16;

#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
}

impl Gateway {
    /// `timeout` bounds each request; it should exceed the gateway's own upstream timeout, so
    /// that a slow service shows as the gateway's 504 rather than as a timeout here.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Gateway {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub async fn open_account(&self, user_id: &str, point: Decimal) -> anyhow::Result<()> {
        let body = json!({ "userId": user_id, "point": point });
        let _: Value = self
            .post("/points", &body, &format!("opening account {user_id}"))
            .await?;
        Ok(())
    }

    /// Places an order with the plain currency (no fault hook) and returns its id.
    pub async fn place_order(&self, holder_id: &str, amount: Decimal) -> anyhow::Result<i64> {
        let body = json!({ "holderId": holder_id, "currencyId": 1, "amount": amount });
        let order: Order = self.post("/orders", &body, "placing an order").await?;
        Ok(order.id)
    }

    /// Places an order under the idempotency key `key`, retrying with the same key a POST that
    /// got no answer or a 5xx, until `give_up` has passed: one order, whatever happened to the
    /// tries before. Returns the order's id and the tries it took.
    pub async fn place_order_retrying(
        &self,
        holder_id: &str,
        amount: Decimal,
        key: &str,
        give_up: Duration,
    ) -> anyhow::Result<(i64, u32)> {
        let body = json!({ "holderId": holder_id, "currencyId": 1, "amount": amount });
        let started = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = self
                .http
                .post(format!("{}/orders", self.base))
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await;
            let failed = match answer {
                Ok(answer) if answer.status().is_server_error() => {
                    format!(
                        "{} {}",
                        answer.status(),
                        answer.text().await.unwrap_or_default()
                    )
                }
                Ok(answer) => {
                    let order: Order = expect(answer, 201, "placing an order").await?;
                    return Ok((order.id, tries));
                }
                Err(error) => format!("{error:#}"),
            };
            if started.elapsed() + wait > give_up {
                bail!("placing an order: {tries} tries failed, the last with {failed}");
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// Every order of a holder; an error if there may be more than one page of them.
    pub async fn orders_of(&self, holder_id: &str) -> anyhow::Result<Vec<Order>> {
        let path = format!("/orders?holderId={holder_id}&limit={MAX_PAGE}");
        let orders: Vec<Order> = self.get(&path).await?.context("no order list")?;
        if orders.len() >= MAX_PAGE {
            bail!("{holder_id} has {MAX_PAGE} orders or more; this client reads one page");
        }
        Ok(orders)
    }

    /// Every order of several holders, asking for `READERS` holders' lists at a time.
    pub async fn orders_of_holders(&self, holders: &[String]) -> anyhow::Result<Vec<Order>> {
        let lists: Vec<Vec<Order>> = stream::iter(holders)
            .map(|holder| self.orders_of(holder))
            .buffered(READERS)
            .try_collect()
            .await?;
        Ok(lists.into_iter().flatten().collect())
    }

    pub async fn exchange(&self, order_id: i64) -> anyhow::Result<Option<Record>> {
        self.get(&format!("/exchanges/{order_id}")).await
    }

    /// The point service's record of a saga.
    pub async fn transaction(&self, order_id: i64) -> anyhow::Result<Option<Record>> {
        self.get(&format!("/transactions/{order_id}")).await
    }

    pub async fn balance(&self, user_id: &str) -> anyhow::Result<Decimal> {
        let account: Account = self
            .get(&format!("/points/{user_id}"))
            .await?
            .with_context(|| format!("no point account {user_id}"))?;
        Ok(account.point)
    }

    /// A POST that creates something (201), described by `what` in errors.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        what: &str,
    ) -> anyhow::Result<T> {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| what.to_string())?;
        expect(answer, 201, what).await
    }

    /// A GET whose 404 means "there is none".
    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let answer = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect(answer, 200, &format!("GET {url}")).await.map(Some)
    }
}

/// The answer's body if it has the expected status; otherwise an error quoting it.
async fn expect<T: DeserializeOwned>(
    answer: reqwest::Response,
    status: u16,
    what: &str,
) -> anyhow::Result<T> {
    let got = answer.status();
    let body = answer
        .text()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    if got.as_u16() != status {
        bail!("{what}: {got} {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: unexpected answer {body}"))
}
