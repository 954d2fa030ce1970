//! Speaking to a stack's services over HTTP, as a client of their APIs would: raw requests
//! answering a status and a JSON body, typed records, and the few calls every test makes
//! (opening an account, placing an order, reading a balance or a metric).

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Stack;

impl Stack {
    pub async fn get(&self, service: &str, path: &str) -> anyhow::Result<(u16, Value)> {
        send(self.http.get(self.url_of(service, path))).await
    }

    pub async fn post(
        &self,
        service: &str,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        send(self.http.post(self.url_of(service, path)).json(body)).await
    }

    /// Posts a raw body with a JSON content type (for malformed JSON).
    pub async fn post_raw(
        &self,
        service: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let request = (self.http.post(self.url_of(service, path)))
            .header("content-type", "application/json")
            .body(body.to_string());
        send(request).await
    }

    /// A record of a service's API, or `None` when it answers 404.
    pub async fn get_record<T: DeserializeOwned>(
        &self,
        service: &str,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        match self.get(service, path).await? {
            (404, _) => Ok(None),
            (200, body) => Ok(Some(
                serde_json::from_value(body).with_context(|| format!("{service} {path}"))?,
            )),
            (status, body) => bail!("{service} {path}: {status} {body}"),
        }
    }

    /// Opens a point account and checks it was created.
    pub async fn open_account(&self, user_id: &str, point: i64) -> anyhow::Result<()> {
        let body = json!({ "userId": user_id, "point": point });
        let (status, body) = self.post("point", "/points", &body).await?;
        if status != 201 {
            bail!("opening account {user_id}: {status} {body}");
        }
        Ok(())
    }

    /// Places an order and returns its id.
    pub async fn order(
        &self,
        holder_id: &str,
        currency_id: i64,
        amount: i64,
    ) -> anyhow::Result<i64> {
        let body = json!({ "holderId": holder_id, "currencyId": currency_id, "amount": amount });
        let (status, order) = self.post("order", "/orders", &body).await?;
        if status != 201 {
            bail!("placing order: {status} {order}");
        }
        order["id"].as_i64().context("order without id")
    }

    /// A holder's balance as the point service writes it, without trailing zeros ("9500").
    pub async fn balance(&self, user_id: &str) -> anyhow::Result<String> {
        let (status, account) = self.get("point", &format!("/points/{user_id}")).await?;
        if status != 200 {
            bail!("account {user_id}: {status} {account}");
        }
        Ok(normalize(&account["point"]))
    }

    /// The value of a counter on a service's `/metrics`, summed over the series whose labels
    /// include every `label="value"` pair given; zero when there is none.
    pub async fn metric(
        &self,
        service: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> anyhow::Result<f64> {
        let text = (self.http.get(self.url_of(service, "/metrics")))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
            .filter(|line| {
                labels
                    .iter()
                    .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    fn url_of(&self, service: &str, path: &str) -> String {
        format!("{}{path}", self.url(service))
    }
}

/// The answer's status and body: its JSON, or its text as a JSON string.
async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    let text = answer.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// The ids of a list of records (`GET /orders`), in the list's order.
pub fn ids(list: &Value) -> Vec<i64> {
    (list.as_array().into_iter().flatten())
        .filter_map(|record| record["id"].as_i64())
        .collect()
}

/// A decimal as the API writes it, with trailing zeros removed: "9500.0000" → "9500".
pub fn normalize(value: &Value) -> String {
    let text = value
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| value.to_string());
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}
