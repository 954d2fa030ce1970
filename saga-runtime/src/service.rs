//! Starting and stopping a service. [`run`] wires the parts every service has (database,
//! topics, outbox relay, consumer, HTTP with operational routes) around the service's own
//! handler, routes and background work, and stops them on SIGTERM or ctrl-c in an order that
//! loses nothing: first the HTTP server and the consumer finish what they started, then the
//! relay publishes what they committed.

use std::{future::Future, sync::Arc, time::Instant};

use anyhow::Context;
use axum::Router;
use sqlx::{PgPool, migrate::Migrator};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    EventHandler,
    config::Config,
    consumer, db,
    http::{Probes, operational_routes},
    kafka::{self, GroupMembership},
    metrics::Metrics,
    outbox, telemetry,
};

/// What a service gets to build itself from.
#[derive(Clone)]
pub struct ServiceContext {
    pub pool: PgPool,
    pub metrics: Metrics,
}

/// A saga participant: its name, port, database and migrations, and how it is built.
pub trait Service: EventHandler + Sized {
    const NAME: &'static str;
    const PORT: u16;
    const DATABASE: &'static str;

    fn migrations() -> &'static Migrator;

    fn build(context: &ServiceContext) -> anyhow::Result<Self>;

    /// The service's REST API.
    fn routes(self: Arc<Self>) -> Router;

    /// Work of the service's own that runs until `shutdown` (the deadline timer).
    fn background(
        self: Arc<Self>,
        _shutdown: CancellationToken,
    ) -> Option<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
        None::<std::future::Ready<anyhow::Result<()>>>
    }
}

/// Runs `S` until SIGTERM or ctrl-c; an error if it could not start or a part of it failed.
pub async fn run<S: Service>() -> anyhow::Result<()> {
    telemetry::init();
    let started = Instant::now();
    let config = Config::from_env(S::NAME, S::PORT, S::DATABASE)?;
    let pool = db::connect(&config.database_url, S::migrations()).await?;
    kafka::ensure_topics(&config.kafka).await?;
    let producer = kafka::producer(&config.kafka)?;
    let metrics = Metrics::new(S::NAME)?;
    let context = ServiceContext {
        pool: pool.clone(),
        metrics: metrics.clone(),
    };
    let service = Arc::new(S::build(&context)?);
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;

    let stop = CancellationToken::new();
    let membership = GroupMembership::default();
    let parts = Parts::new(stop.clone());
    let app = service
        .clone()
        .routes()
        .merge(operational_routes(Probes {
            pool: pool.clone(),
            producer: producer.clone(),
            metrics: metrics.clone(),
            membership: membership.clone(),
        }))
        .method_not_allowed_fallback(crate::http::method_not_allowed);
    let http_stop = stop.clone();
    parts.spawn("http", async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(http_stop.cancelled_owned())
            .await
            .context("HTTP server failed")
    });
    parts.spawn(
        "consumer",
        consumer::run(
            config.clone(),
            pool.clone(),
            producer.clone(),
            service.clone(),
            metrics.clone(),
            membership,
            stop.clone(),
        ),
    );
    if let Some(work) = service.clone().background(stop.clone()) {
        parts.spawn("background", work);
    }
    // The relay stops last, after everything that writes to the outbox has stopped.
    let relay_stop = CancellationToken::new();
    let relay = outbox::relay(
        pool,
        producer,
        config.kafka.topic.clone(),
        metrics,
        relay_stop.clone(),
    );
    let relay = tokio::spawn({
        // A relay that fails stops the service: running on without it would publish nothing.
        let stop = stop.clone();
        async move {
            let relayed = relay.await;
            if relayed.is_err() {
                stop.cancel();
            }
            relayed
        }
    });

    tracing::info!(
        addr = %config.http_addr,
        topic = config.kafka.topic,
        group = config.kafka.group_id,
        startup_ms = started.elapsed().as_millis() as u64,
        "{} started",
        S::NAME
    );
    tokio::select! {
        _ = stop.cancelled() => {}
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            stop.cancel();
        }
    }
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
