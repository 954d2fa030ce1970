//! Starting and stopping a service, in two steps as zero2prod's `Application` does:
//! [`App::build`] connects to the database and Kafka and binds the HTTP listener (port 0 in
//! tests), and [`App::run_until_stopped`] runs every part until its shutdown token is
//! cancelled. [`serve`] is what a service's `main` calls: configuration from the environment,
//! shutdown on SIGTERM or ctrl-c.
//!
//! The parts stop in an order that loses nothing: first the HTTP server, the consumer and the
//! service's background work finish what they started, then the relay publishes what they
//! committed.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Instant};

use anyhow::Context;
use axum::Router;
use common_events::EventType;
use sqlx::{PgPool, migrate::Migrator};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use utoipa_axum::router::OpenApiRouter;

use crate::{
    Clock, EventHandler,
    config::{Config, Vars},
    consumer, db,
    http::{Probes, layers, operational_routes, probe_routes},
    kafka::{self, Producer},
    metrics::Metrics,
    outbox, retention,
    retry::Backoff,
    telemetry,
};

/// What a service gets to build itself from.
#[derive(Clone)]
pub struct ServiceContext {
    pub pool: PgPool,
    pub metrics: Metrics,
    /// To wake the outbox relay after committing what the service wrote outside the consumer.
    pub outbox: outbox::Outbox,
    /// The time the service decides by.
    pub clock: Clock,
}

/// A saga participant: its name, port, database and migrations, its own settings, and how it
/// is built.
pub trait Service: EventHandler + Sized {
    const NAME: &'static str;
    const PORT: u16;
    const DATABASE: &'static str;
    /// The events it writes to its outbox.
    const PRODUCES: &'static [EventType];
    /// Its own tables that grow with every saga, pruned beside the outbox and the inbox.
    const RETAINED: &'static [retention::Table];

    /// Settings of this service's own, beside the runtime's [`Config`].
    type Settings: Send + 'static;

    /// Reads [`Self::Settings`] from the configuration variables.
    fn settings(vars: &Vars) -> anyhow::Result<Self::Settings>;

    fn migrations() -> &'static Migrator;

    fn build(context: &ServiceContext, settings: Self::Settings) -> anyhow::Result<Self>;

    /// The service's REST API: its routes with their OpenAPI operations, built together
    /// (see [`crate::openapi`]).
    fn api() -> OpenApiRouter<Arc<Self>>;

    /// Work of the service's own that runs until `shutdown` (the deadline timer).
    fn background(
        self: Arc<Self>,
        _shutdown: CancellationToken,
    ) -> Option<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
        None::<std::future::Ready<anyhow::Result<()>>>
    }
}

/// Runs `S` as a process: configuration from the environment, logs, and shutdown on SIGTERM
/// or ctrl-c; an error if it could not start or a part of it failed.
pub async fn serve<S: Service>() -> anyhow::Result<()> {
    let vars = Vars::from_env();
    let config = Config::from_vars(S::NAME, S::PORT, S::DATABASE, &vars)?;
    telemetry::init(config.log_format);
    let settings = S::settings(&vars)?;
    let bound = config.shutdown_timeout;
    let app = App::<S>::build(config, settings).await?;
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            let signal = shutdown_signal().await;
            tracing::info!(signal, "shutting down");
            stop.cancel();
            exit_after(bound);
        }
    });
    app.run_until_stopped(stop).await
}

/// Ends the process `bound` from now if it is still running then. A plain thread, not a task:
/// a runtime that is stopping may never poll a task again, and waits for blocking work (a
/// librdkafka call stuck on a paused broker) without limit. Exiting loses nothing: what was
/// not committed is redone after the restart, as after a crash.
pub fn exit_after(bound: std::time::Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(bound);
        tracing::error!(
            timeout_ms = bound.as_millis() as u64,
            "shutdown did not finish in time; exiting without finishing it"
        );
        std::process::exit(1);
    });
}

/// [`kafka::ensure_topics`], tried three times with the runtime's backoff: a broker that has
/// just come back may leave the first request unanswered.
async fn ensure_topics(config: &Config) -> anyhow::Result<Option<std::time::Duration>> {
    let mut attempt = 1;
    loop {
        match kafka::ensure_topics(&config.kafka).await {
            Err(error) if attempt < 3 => tracing::warn!(
                error.message = format!("{error:#}"),
                attempt,
                "cannot ensure the topics; trying again"
            ),
            done => return done,
        }
        tokio::time::sleep(Backoff::DEFAULT.delay(attempt)).await;
        attempt += 1;
    }
}

/// A service built and ready to run.
pub struct App<S> {
    config: Config,
    service: Arc<S>,
    pool: PgPool,
    producer: Arc<Producer>,
    metrics: Metrics,
    outbox: outbox::Outbox,
    listener: TcpListener,
    started: Instant,
}

impl<S: Service> App<S> {
    /// Connects to the database (creating and migrating it if needed) and to Kafka (creating
    /// the topics if needed), builds the service and binds its HTTP listener.
    pub async fn build(config: Config, settings: S::Settings) -> anyhow::Result<Self> {
        let started = Instant::now();
        let pool = db::connect(&config.database, S::migrations()).await?;
        let topic_keeps = ensure_topics(&config).await?;
        retention::check(&config.retention, topic_keeps)?;
        let metrics = Metrics::new(S::NAME, S::CONSUMES, S::PRODUCES)?;
        let producer = Arc::new(Producer::new(&config.kafka, metrics.clone())?);
        let outbox = outbox::Outbox::default();
        let context = ServiceContext {
            pool: pool.clone(),
            metrics: metrics.clone(),
            outbox: outbox.clone(),
            clock: config.clock.clone(),
        };
        let service = Arc::new(S::build(&context, settings)?);
        let listener = TcpListener::bind(config.http.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.http.addr))?;
        Ok(App {
            config,
            service,
            pool,
            producer,
            metrics,
            outbox,
            listener,
            started,
        })
    }

    /// Where the HTTP API listens (the port the system chose, for port 0).
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("the listener has no address")
    }

    /// Runs every part until `stop` is cancelled or a part fails, then stops them in order.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let addr = self.addr()?;
        let App {
            config,
            service,
            pool,
            producer,
            metrics,
            outbox,
            listener,
            started,
        } = self;
        let probes = Probes {
            pool: pool.clone(),
            producer: producer.clone(),
            metrics: metrics.clone(),
        };
        let app = Router::from(S::api())
            .with_state(service.clone())
            .merge(operational_routes(probes.clone()))
            .method_not_allowed_fallback(crate::http::method_not_allowed);
        let app = layers(app, &config.http).merge(probe_routes(probes));

        let parts = Parts::new(stop.clone());
        let http_stop = stop.clone();
        parts.spawn("http", async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await
                .context("HTTP server failed")
        });
        let consumer_parts = consumer::Parts {
            handler: service.clone(),
            pool: pool.clone(),
            producer: producer.clone(),
            metrics: metrics.clone(),
            outbox: outbox.clone(),
        };
        let consumer_config = config.clone();
        let consumer_stop = stop.clone();
        parts.spawn("consumer", async move {
            consumer::run(&consumer_config, consumer_parts, consumer_stop).await
        });
        if let Some(work) = service.clone().background(stop.clone()) {
            parts.spawn("background", work);
        }
        let tables = [retention::OUTBOX, retention::INBOX]
            .into_iter()
            .chain(S::RETAINED.iter().copied())
            .collect();
        let pruning = retention::run(
            pool.clone(),
            tables,
            config.retention.clone(),
            metrics.clone(),
            stop.clone(),
        );
        parts.spawn("retention", async move {
            pruning.await;
            Ok(())
        });
        // The relay stops last, after everything that writes to the outbox has stopped.
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn({
            let (topic, relay_stop) = (config.kafka.topic.clone(), relay_stop.clone());
            // A relay that fails stops the service: running on without it would publish nothing.
            let stop = stop.clone();
            async move {
                let relayed =
                    outbox::relay(pool, &producer, topic, metrics, outbox, relay_stop).await;
                if relayed.is_err() {
                    stop.cancel();
                }
                relayed
            }
        });

        tracing::info!(
            %addr,
            topic = config.kafka.topic,
            group = config.kafka.group_id,
            startup_ms = started.elapsed().as_millis() as u64,
            "{} started",
            S::NAME
        );
        stop.cancelled().await;
        parts.tasks.close();
        parts.tasks.wait().await;
        relay_stop.cancel();
        let relayed = relay.await.context("relay task panicked")?;
        if let Err(error) = &relayed {
            tracing::error!(
                error.message = format!("{error:#}"),
                "outbox relay stopped with an error"
            );
        }
        tracing::info!("{} stopped", S::NAME);
        match (parts.failed(), relayed) {
            (Some(part), _) => anyhow::bail!("{} stopped because its {part} failed", S::NAME),
            (None, Err(_)) => anyhow::bail!("{} stopped because its outbox relay failed", S::NAME),
            (None, Ok(())) => Ok(()),
        }
    }
}

/// The tasks of a running service; the first to fail stops the others.
struct Parts {
    tasks: TaskTracker,
    stop: CancellationToken,
    failed: Arc<std::sync::Mutex<Option<&'static str>>>,
}

impl Parts {
    fn new(stop: CancellationToken) -> Self {
        Parts {
            tasks: TaskTracker::new(),
            stop,
            failed: Default::default(),
        }
    }

    fn spawn(
        &self,
        name: &'static str,
        work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let (stop, failed) = (self.stop.clone(), self.failed.clone());
        self.tasks.spawn(async move {
            if let Err(error) = work.await {
                tracing::error!(
                    error.message = format!("{error:#}"),
                    part = name,
                    "service part failed"
                );
                if let Ok(mut failed) = failed.lock() {
                    failed.get_or_insert(name);
                }
                stop.cancel();
            }
        });
    }

    fn failed(&self) -> Option<&'static str> {
        self.failed.lock().ok().and_then(|failed| *failed)
    }
}

/// Resolves on SIGTERM or ctrl-c, with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate => "SIGTERM",
    }
}
