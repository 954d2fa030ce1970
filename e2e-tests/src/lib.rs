//! Test harness for process-level tests: each test gets a [`Stack`] of the real service
//! binaries, wired to the real Kafka broker and PostgreSQL server named by `KAFKA_BOOTSTRAP` and
//! `PG_URL` (as `scripts/test` provides them), with its own topic, consumer groups and
//! databases, so tests never see each other's data. The databases are dropped when the stack
//! is. Nothing here sleeps for a fixed time: every wait polls a condition with a timeout.
//! Tests that kill the broker or the database run a stack on servers of their own ([`infra`]).

pub mod in_process;
pub mod infra;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use harness::{
    api::{Account, Order},
    invariants::{self, Observed, Outcome, Saga},
    topic::{Marks, Topic},
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use rust_decimal::Decimal;
use serde_json::Value;

/// The services a stack runs, by short name.
pub const SERVICES: [&str; 4] = ["order", "exchange", "point", "deadline"];
/// Partitions of each stack's topic.
pub const PARTITIONS: i32 = 4;

/// The Kafka broker and PostgreSQL server a stack runs against.
#[derive(Debug, Clone)]
pub struct Servers {
    pub kafka: String,
    pub postgres: String,
}

impl Servers {
    /// The servers every test shares: those `scripts/test` provides (`KAFKA_BOOTSTRAP` and
    /// `PG_URL`), or the local defaults.
    pub fn shared() -> Servers {
        Servers {
            kafka: std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            postgres: std::env::var("PG_URL")
                .unwrap_or_else(|_| "postgres://saga:saga@127.0.0.1:5432".into()),
        }
    }
}

/// One running copy of the suite.
pub struct Stack {
    pub id: String,
    pub topic: String,
    pub servers: Servers,
    env: HashMap<String, String>,
    /// By instance name: a service's name, or another name for a second instance of it.
    ports: HashMap<String, u16>,
    processes: HashMap<String, Child>,
    logs: PathBuf,
    http: reqwest::Client,
}

impl Stack {
    /// Starts the four services with `env` added to their environment.
    pub async fn start(test: &str, env: &[(&str, &str)]) -> anyhow::Result<Stack> {
        Stack::start_on(Servers::shared(), test, env).await
    }

    /// Starts the four services against `servers`.
    pub async fn start_on(
        servers: Servers,
        test: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Stack> {
        let mut stack = Stack::prepare_on(servers, test, env).await?;
        for service in SERVICES {
            stack.spawn(service, &[])?;
        }
        for service in SERVICES {
            stack.wait_ready(service).await?;
        }
        Ok(stack)
    }

    /// Sets a stack up without starting anything: topic created, ports chosen.
    pub async fn prepare(test: &str, env: &[(&str, &str)]) -> anyhow::Result<Stack> {
        Stack::prepare_on(Servers::shared(), test, env).await
    }

    pub async fn prepare_on(
        servers: Servers,
        test: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Stack> {
        let id = format!(
            "{}_{}",
            test,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let topic = format!("e2e.{id}");
        create_topic(&servers.kafka, &topic).await?;
        let mut ports = HashMap::new();
        for service in SERVICES.iter().chain(&["gateway"]) {
            let taken: Vec<u16> = ports.values().copied().collect();
            ports.insert(service.to_string(), free_port(&taken)?);
        }
        let mut base: HashMap<String, String> = [
            ("KAFKA_BOOTSTRAP", servers.kafka.clone()),
            ("KAFKA_TOPIC", topic.clone()),
            ("KAFKA_GROUP_PREFIX", format!("{id}-")),
            ("KAFKA_PARTITIONS", PARTITIONS.to_string()),
            ("PG_URL", servers.postgres.clone()),
            ("HOST", "127.0.0.1".into()),
            (
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            ("DATABASE_MAX_CONNECTIONS", "5".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (key, value) in env {
            base.insert(key.to_string(), value.to_string());
        }
        let logs = target_dir()?.join("e2e-logs").join(&id);
        std::fs::create_dir_all(&logs)?;
        Ok(Stack {
            id,
            topic,
            servers,
            env: base,
            ports,
            processes: HashMap::new(),
            logs,
            http: reqwest::Client::new(),
        })
    }

    fn database(&self, service: &str) -> String {
        format!("e2e_{}_{}", service, self.id)
    }

    /// Starts one service (or `gateway`) with extra variables; does not wait for it.
    pub fn spawn(&mut self, service: &str, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        self.spawn_instance(service, service, extra)
    }

    /// Starts an instance of `service` under the name `instance`: a second instance shares the
    /// service's database and consumer group, with a port and group member id of its own.
    pub fn spawn_instance(
        &mut self,
        service: &str,
        instance: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        if !self.ports.contains_key(instance) {
            let taken: Vec<u16> = self.ports.values().copied().collect();
            self.ports.insert(instance.to_string(), free_port(&taken)?);
        }
        let binary = target_dir()?.join(if service == "gateway" {
            "gateway".to_string()
        } else {
            format!("{service}-service")
        });
        built_from_current_sources(&binary)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{instance}.log")))?;
        let mut command = Command::new(&binary);
        command
            .envs(&self.env)
            .env("PORT", self.ports[instance].to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if service == "gateway" {
            for upstream in SERVICES {
                command.env(
                    format!("{}_URL", upstream.to_uppercase()),
                    format!("http://127.0.0.1:{}", self.ports[upstream]),
                );
            }
        } else {
            command.env(
                "DATABASE_URL",
                format!("{}/{}", self.servers.postgres, self.database(service)),
            );
        }
        command.envs(extra.iter().copied());
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.processes.insert(instance.to_string(), child);
        Ok(())
    }

    /// Waits until the service answers `/readyz` (`/healthz` for the gateway).
    pub async fn wait_ready(&mut self, service: &str) -> anyhow::Result<()> {
        let path = if service == "gateway" {
            "/healthz"
        } else {
            "/readyz"
        };
        let url = format!("{}{path}", self.url(service));
        let started = Instant::now();
        loop {
            if let Some(child) = self.processes.get_mut(service)
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{service} exited during start ({status}); see {}",
                    self.logs.display()
                );
            }
            if let Ok(answer) = self.http.get(&url).send().await
                && answer.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "{service} not ready after 30 s; see {}",
                    self.logs.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a service that was stopped or killed, and waits until it is ready.
    pub async fn restart(
        &mut self,
        service: &'static str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        self.spawn(service, extra)?;
        self.wait_ready(service).await
    }

    /// SIGKILL: the process dies at once, finishing nothing.
    pub fn kill(&mut self, service: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.processes.remove(service) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the graceful exit; returns whether it exited successfully.
    pub async fn stop(&mut self, service: &str) -> anyhow::Result<bool> {
        let Some(mut child) = self.processes.remove(service) else {
            return Ok(true);
        };
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
        let status = wait_until(Duration::from_secs(30), || {
            let status = child.try_wait();
            async move { status.ok().flatten() }
        })
        .await
        .with_context(|| format!("{service} did not stop after SIGTERM"))?;
        Ok(status.success())
    }

    /// Waits for a service to exit on its own (e.g. at a crash point); an error if it does not.
    pub async fn wait_exit(&mut self, service: &str, timeout: Duration) -> anyhow::Result<()> {
        let mut child = self
            .processes
            .remove(service)
            .with_context(|| format!("{service} is not running"))?;
        wait_until(timeout, || {
            let status = child.try_wait();
            async move { status.ok().flatten() }
        })
        .await
        .with_context(|| format!("{service} did not exit"))?;
        Ok(())
    }

    /// What an instance has logged so far.
    pub fn log(&self, instance: &str) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(
            self.logs.join(format!("{instance}.log")),
        )?)
    }

    /// Sends the requests meant for `service` to `instance` from now on (after the first
    /// instance was killed, say).
    pub fn answer_from(&mut self, service: &str, instance: &str) {
        if let Some(port) = self.ports.get(instance).copied() {
            self.ports.insert(service.to_string(), port);
        }
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[service])
    }

    /// A direct connection to a service's database, for checks the API does not show.
    pub async fn db(&self, service: &str) -> anyhow::Result<sqlx::PgPool> {
        let url = format!("{}/{}", self.servers.postgres, self.database(service));
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await?)
    }

    pub async fn get(&self, service: &str, path: &str) -> anyhow::Result<(u16, Value)> {
        let answer = self
            .http
            .get(format!("{}{path}", self.url(service)))
            .send()
            .await?;
        decode(answer).await
    }

    pub async fn post(
        &self,
        service: &str,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let answer = self
            .http
            .post(format!("{}{path}", self.url(service)))
            .json(body)
            .send()
            .await?;
        decode(answer).await
    }

    /// Posts a raw body with a JSON content type (for malformed JSON).
    pub async fn post_raw(
        &self,
        service: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let answer = self
            .http
            .post(format!("{}{path}", self.url(service)))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        decode(answer).await
    }

    /// Opens a point account and checks it was created.
    pub async fn open_account(&self, user_id: &str, point: i64) -> anyhow::Result<()> {
        let (status, body) = self
            .post(
                "point",
                "/points",
                &serde_json::json!({ "userId": user_id, "point": point }),
            )
            .await?;
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
        let body = serde_json::json!({ "holderId": holder_id, "currencyId": currency_id, "amount": amount });
        let (status, order) = self.post("order", "/orders", &body).await?;
        if status != 201 {
            bail!("placing order: {status} {order}");
        }
        order["id"].as_i64().context("order without id")
    }

    /// Waits until the order's status is final (not PENDING) and returns the order.
    pub async fn settled(&self, order_id: i64, timeout: Duration) -> anyhow::Result<Value> {
        wait_until(timeout, || async move {
            let (_, order) = self
                .get("order", &format!("/orders/{order_id}"))
                .await
                .ok()?;
            (order["status"] != "PENDING" && !order["status"].is_null()).then_some(order)
        })
        .await
        .with_context(|| {
            format!(
                "order {order_id} still pending; logs in {}",
                self.logs.display()
            )
        })
    }

    /// Waits until the order has the given status and its compensation (if any) is done.
    pub async fn finished(
        &self,
        order_id: i64,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        wait_until(timeout, || async move {
            let (_, order) = self
                .get("order", &format!("/orders/{order_id}"))
                .await
                .ok()?;
            let compensated = order["compensation"].is_null() || order["compensation"] == "DONE";
            (order["status"] == status && compensated).then_some(order)
        })
        .await
        .with_context(|| {
            format!(
                "order {order_id} never reached {status}; logs in {}",
                self.logs.display()
            )
        })
    }

    pub async fn balance(&self, user_id: &str) -> anyhow::Result<String> {
        let (status, account) = self.get("point", &format!("/points/{user_id}")).await?;
        if status != 200 {
            bail!("account {user_id}: {status} {account}");
        }
        Ok(normalize(&account["point"]))
    }

    /// Every event of the stack's topic published so far, in order per partition.
    pub async fn events(&self) -> anyhow::Result<Vec<Value>> {
        read_topic(&self.servers.kafka, &self.topic).await
    }

    /// The event types of one saga, in the order they were published.
    pub async fn saga_events(&self, order_id: i64) -> anyhow::Result<Vec<String>> {
        Ok(self
            .events()
            .await?
            .into_iter()
            .filter(|event| event["orderId"] == order_id)
            .filter_map(|event| event["eventType"].as_str().map(String::from))
            .collect())
    }

    /// The value of a counter on a service's `/metrics`, summed over the series whose labels
    /// include every `label="value"` pair given; zero when there is none.
    pub async fn metric(
        &self,
        service: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url(service)))
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

    /// Publishes a message to the stack's topic, with a `type` header when given.
    pub async fn publish(
        &self,
        key: &str,
        payload: &str,
        event_type: Option<&str>,
    ) -> anyhow::Result<()> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers.kafka)
            .create()?;
        let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
        if let Some(event_type) = event_type {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "type",
                value: Some(event_type),
            }));
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    /// Publishes `event` again, as the relay would have: keyed by its order, with its type.
    pub async fn republish(&self, event: &Value) -> anyhow::Result<()> {
        self.publish(
            &event["orderId"].to_string(),
            &event.to_string(),
            event["eventType"].as_str(),
        )
        .await
    }

    /// Every message on the stack's dead-letter topic.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<Value>> {
        read_topic(&self.servers.kafka, &format!("{}.DLT", self.topic)).await
    }
}

/// How a set of sagas ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub approved: usize,
    pub rejected: usize,
}

impl Stack {
    /// Waits until every one of `orders` (all of `holder`, whose account opened with `initial`
    /// points) has ended and finished compensating, then checks the invariants of SPEC §4 on
    /// what the services' APIs and the topic show, with the checker the chaos run uses
    /// ([`harness::invariants`]).
    pub async fn settle_and_check(
        &self,
        holder: &str,
        initial: i64,
        orders: &[i64],
        timeout: Duration,
    ) -> anyhow::Result<Settled> {
        let mut sagas = Vec::new();
        for order_id in orders {
            let order = wait_until(timeout, || async move {
                let order: Order = self
                    .get_record("order", &format!("/orders/{order_id}"))
                    .await
                    .ok()??;
                (invariants::outcome(&order) != Outcome::Unsettled).then_some(order)
            })
            .await
            .with_context(|| {
                format!(
                    "order {order_id} did not settle; logs in {}",
                    self.logs.display()
                )
            })?;
            sagas.push(Saga {
                order,
                exchange: self
                    .get_record("exchange", &format!("/exchanges/{order_id}"))
                    .await?,
                transaction: self
                    .get_record("point", &format!("/transactions/{order_id}"))
                    .await?,
            });
        }
        let account: Account = self
            .get_record("point", &format!("/points/{holder}"))
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

    /// A record of a service's API, or `None` when it answers 404.
    async fn get_record<T: serde::de::DeserializeOwned>(
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
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, mut child) in self.processes.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let databases: Vec<String> = SERVICES.iter().map(|s| self.database(s)).collect();
        let postgres = self.servers.postgres.clone();
        // Drop runs inside the test's runtime, so the cleanup gets a thread and runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let pool = sqlx::PgPool::connect(&format!("{postgres}/postgres")).await?;
                for database in databases {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    )))
                    .execute(&pool)
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .join();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if started.elapsed() > timeout {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

async fn decode(answer: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let status = answer.status().as_u16();
    let text = answer.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// Refuses a service binary that is missing, or older than a source it was built from: a test
/// would run code that is no longer there. Cargo lists those sources in the dep-info file
/// beside the binary (`order-service.d`: `target: source source ...`, spaces escaped as `\ `).
/// `cargo test` cannot build the binaries itself: it holds the build directory's lock while its
/// tests run.
fn built_from_current_sources(binary: &Path) -> anyhow::Result<()> {
    const REBUILD: &str = "run `cargo build --workspace --bins` (scripts/test does)";
    let built = std::fs::metadata(binary)
        .and_then(|meta| meta.modified())
        .with_context(|| format!("{} is missing: {REBUILD}", binary.display()))?;
    let dep_info = binary.with_extension("d");
    let text = std::fs::read_to_string(&dep_info)
        .with_context(|| format!("cannot read {}: {REBUILD}", dep_info.display()))?;
    let (_, sources) = text
        .lines()
        .next()
        .and_then(|line| line.split_once(": "))
        .with_context(|| format!("{} lists no sources", dep_info.display()))?;
    let sources = sources.replace("\\ ", "\0");
    for source in sources.split_whitespace().map(|s| s.replace('\0', " ")) {
        let changed = std::fs::metadata(&source).and_then(|meta| meta.modified());
        if !matches!(changed, Ok(changed) if changed <= built) {
            bail!(
                "{} is older than {source}, or that file is gone: {REBUILD}",
                binary.display()
            );
        }
    }
    Ok(())
}

/// The directory holding the workspace's binaries (this test binary lives in its `deps/`).
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("test binary has no directory")?;
    Ok(deps.parent().context("deps has no parent")?.to_path_buf())
}

/// A port that is free now and not among `taken`. A port just released is handed out again,
/// so ports of one stack must be told apart here: a stopped service keeps its port for its
/// restart, and two services given the same port would answer for each other.
pub(crate) fn free_port(taken: &[u16]) -> anyhow::Result<u16> {
    // Listeners whose port was taken stay open, so the next bind gets another port.
    let mut held = Vec::new();
    loop {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
        held.push(listener);
    }
}

pub(crate) async fn create_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .with_context(|| format!("Kafka not reachable at {bootstrap}: run scripts/test"))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("cannot create {topic}: {code}"))?;
    }
    Ok(())
}

/// Reads a topic from the beginning to its current end.
pub async fn read_topic(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<Value>> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut assignment = TopicPartitionList::new();
        let mut remaining = 0;
        let mut ends = HashMap::new();
        for partition in &partitions {
            let (low, high) =
                consumer.fetch_watermarks(&topic, *partition, Duration::from_secs(10))?;
            if high > low {
                assignment.add_partition_offset(&topic, *partition, Offset::Beginning)?;
                ends.insert(*partition, high);
                remaining += 1;
            }
        }
        let mut events = Vec::new();
        if remaining == 0 {
            return Ok(events);
        }
        consumer.assign(&assignment)?;
        let started = Instant::now();
        while remaining > 0 {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("could not read {topic} to its end");
            }
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message?;
            if let Some(payload) = message.payload() {
                let text = String::from_utf8_lossy(payload);
                events.push(
                    serde_json::from_str(&text)
                        .unwrap_or_else(|_| Value::String(text.into_owned())),
                );
            }
            if message.offset() + 1 == ends[&message.partition()] {
                remaining -= 1;
            }
        }
        Ok(events)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        time::{Duration, SystemTime},
    };

    use super::built_from_current_sources;

    /// A binary, its dep-info file naming `source` (whose name has a space), and the times each
    /// was last written.
    fn build(dir: &std::path::Path, binary_at: SystemTime, source_at: SystemTime) {
        let binary = dir.join("order-service");
        let source = dir.join("my src.rs");
        File::create(&source)
            .unwrap()
            .set_modified(source_at)
            .unwrap();
        std::fs::write(
            dir.join("order-service.d"),
            format!(
                "{}: {}\n",
                binary.display(),
                source.display().to_string().replace(' ', "\\ ")
            ),
        )
        .unwrap();
        File::create(&binary)
            .unwrap()
            .set_modified(binary_at)
            .unwrap();
    }

    #[test]
    fn a_binary_built_after_its_sources_is_accepted_and_one_older_than_a_source_is_refused() {
        let dir = std::env::temp_dir().join(format!("freshness-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        let earlier = now - Duration::from_secs(60);

        build(&dir, now, earlier);
        built_from_current_sources(&dir.join("order-service")).unwrap();

        build(&dir, earlier, now);
        let refused = built_from_current_sources(&dir.join("order-service")).unwrap_err();
        assert!(refused.to_string().contains("my src.rs"), "{refused}");

        build(&dir, now, earlier);
        std::fs::remove_file(dir.join("my src.rs")).unwrap();
        assert!(built_from_current_sources(&dir.join("order-service")).is_err());
        assert!(built_from_current_sources(&dir.join("missing-service")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
