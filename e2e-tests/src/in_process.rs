//! One service inside the test process, against the real Kafka and PostgreSQL: the middle tier
//! of tests, between the pure decisions' unit tests and the process-level tests of [`Stack`].
//! A test plays the other services by publishing their events on the service's own topic, and
//! checks what the service wrote (its database) and what it emitted (the topic).
//!
//! Each [`TestApp`] gets its own topic, consumer group and database (dropped afterwards), and
//! listens on port 0, so tests run in parallel without seeing each other.
//!
//! [`Stack`]: crate::Stack

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use common_events::{Envelope, Event, EventType, OrderId};
use rdkafka::{ClientConfig, producer::FutureProducer};
use saga_runtime::{
    App, Clock, Service,
    config::{Config, Vars},
    testing::ScratchDb,
};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{SETTLE, Servers, kafka, read_topic, stack::service_vars, wait_until};

/// How long a test waits for what it expects: the same as the process-level tests.
pub const PATIENCE: Duration = SETTLE;

/// A running service.
pub struct TestApp {
    pub addr: SocketAddr,
    pub topic: String,
    /// The service's own database, for checks its API does not show.
    pub db: sqlx::PgPool,
    servers: Servers,
    config: Config,
    producer: FutureProducer,
    http: reqwest::Client,
    stop: CancellationToken,
    running: Option<JoinHandle<anyhow::Result<()>>>,
    /// Dropped last, once the service has been told to stop.
    _database: ScratchDb,
}

impl TestApp {
    /// Builds and starts `S` with `settings` and extra configuration `vars`; returns once its
    /// consumer has joined its group, so published events are consumed.
    pub async fn spawn<S: Service>(
        settings: S::Settings,
        vars: &[(&str, &str)],
    ) -> anyhow::Result<TestApp> {
        TestApp::spawn_on_clock::<S>(settings, vars, Clock::system()).await
    }

    /// [`TestApp::spawn`] with the service reading its time from `clock`.
    pub async fn spawn_on_clock<S: Service>(
        settings: S::Settings,
        vars: &[(&str, &str)],
        clock: Clock,
    ) -> anyhow::Result<TestApp> {
        let servers = Servers::from_env();
        let database = database::<S>().await?;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let topic = format!("test.{}.{id}", S::NAME);
        kafka::create_topic(&servers.kafka, &topic).await?;
        let mut all = service_vars(&servers, &topic, &id, &database.name);
        all.push(("PORT", "0".into()));
        let all = all.iter().map(|(key, value)| (*key, value.as_str()));
        let vars: Vars = all.chain(vars.iter().copied()).collect();
        let mut config = Config::from_vars(S::NAME, S::PORT, S::DATABASE, &vars)?;
        config.clock = clock;
        let mut test = TestApp {
            addr: config.http.addr,
            db: database.pool.clone(),
            topic,
            config,
            producer: ClientConfig::new()
                .set("bootstrap.servers", &servers.kafka)
                .create()?,
            servers,
            http: reqwest::Client::new(),
            stop: CancellationToken::new(),
            running: None,
            _database: database,
        };
        test.start::<S>(settings).await?;
        Ok(test)
    }

    /// Stops the service, runs `meanwhile` (a test moves its clock, say), and starts the service
    /// again on the same database, topic and consumer group.
    pub async fn restart<S: Service>(
        mut self,
        settings: S::Settings,
        meanwhile: impl FnOnce(),
    ) -> anyhow::Result<TestApp> {
        self.stop.cancel();
        if let Some(running) = self.running.take() {
            running.await.context("the service panicked")??;
        }
        meanwhile();
        self.start::<S>(settings).await?;
        Ok(self)
    }

    async fn start<S: Service>(&mut self, settings: S::Settings) -> anyhow::Result<()> {
        let app = App::<S>::build(self.config.clone(), settings).await?;
        self.addr = app.addr()?;
        self.stop = CancellationToken::new();
        self.running = Some(tokio::spawn(app.run_until_stopped(self.stop.clone())));
        wait_until(PATIENCE, || async {
            let answer = self.http.get(self.url("/readyz")).send().await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await
        .context("the service never became ready")
    }

    /// A connection to the service's database made as the service makes its own, with the
    /// same limits: to play another instance of it.
    pub async fn service_connection(&self) -> anyhow::Result<sqlx::PgConnection> {
        use sqlx::Connection;
        Ok(
            sqlx::PgConnection::connect_with(&saga_runtime::db::options(&self.config.database)?)
                .await?,
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let answer = self.http.get(self.url(path)).send().await?;
        Ok((
            answer.status().as_u16(),
            answer.json().await.unwrap_or(Value::Null),
        ))
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let (status, _, body) = self.post_with_headers(path, body, &[]).await?;
        Ok((status, body))
    }

    /// A POST with extra request headers; the answer's status, headers and body.
    pub async fn post_with_headers(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
        let request = headers.iter().fold(
            self.http.post(self.url(path)).json(body),
            |request, (name, value)| request.header(*name, *value),
        );
        let answer = request.send().await?;
        let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
        Ok((status, headers, answer.json().await.unwrap_or(Value::Null)))
    }

    /// Publishes `event` as the service that emits it would: keyed by its order, typed.
    pub async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        kafka::publish(
            &self.producer,
            &self.topic,
            &event.order_id.to_string(),
            &event.to_json(),
            Some(event.event.event_type().as_str()),
        )
        .await
    }

    /// Waits until the service has emitted an event of `event_type` for `order_id`.
    pub async fn emitted(
        &self,
        order_id: OrderId,
        event_type: EventType,
    ) -> anyhow::Result<Envelope> {
        wait_until(PATIENCE, || async {
            self.events(order_id)
                .await
                .ok()?
                .into_iter()
                .find(|event| event.event.event_type() == event_type)
        })
        .await
        .with_context(|| format!("no {event_type} for order {order_id}"))
    }

    /// Every event of `order_id` on the topic, in order.
    pub async fn events(&self, order_id: OrderId) -> anyhow::Result<Vec<Envelope>> {
        Ok(read_topic(&self.servers.kafka, &self.topic)
            .await?
            .into_iter()
            .filter_map(|value| Envelope::from_json(value.to_string().as_bytes()).ok())
            .filter(|event| event.order_id == order_id)
            .collect())
    }

    /// Waits until the inbox has recorded `event` (applied or ignored), and returns its outcome
    /// and detail.
    pub async fn handled(&self, event: &Envelope) -> anyhow::Result<(String, Option<String>)> {
        wait_until(PATIENCE, || async {
            sqlx::query_as("SELECT outcome, detail FROM inbox WHERE event_id = $1")
                .bind(event.event_id)
                .fetch_optional(&self.db)
                .await
                .ok()?
        })
        .await
        .with_context(|| format!("{} was never handled", event.event.event_type()))
    }

    /// Stops the service as SIGTERM would, and returns how its run ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.running.take() {
            Some(running) => running.await.context("the service panicked")?,
            None => Ok(()),
        }
    }
}

/// A database of a test's own, migrated as service `S` migrates its own, and dropped with it.
pub async fn database<S: Service>() -> anyhow::Result<ScratchDb> {
    ScratchDb::migrated(&format!("test_{}", S::DATABASE), S::migrations()).await
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An event of saga `order_id` with a deadline `in_ms` from now (negative: already passed), to
/// the millisecond, as deadlines travel.
pub fn event(order_id: OrderId, in_ms: i64, event: Event) -> Envelope {
    let deadline = chrono::Utc::now().timestamp_millis() + in_ms;
    let deadline = chrono::DateTime::from_timestamp_millis(deadline).unwrap_or_default();
    Envelope::new(order_id, deadline, event)
}
