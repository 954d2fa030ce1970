//! The instances behind one service, and how a request reaches one of them.
//!
//! Requests take the instances in turn (round robin). An instance that refuses the connection,
//! or does not accept it within the connect timeout, never saw the request, so the next one is
//! tried, even for a POST. A POST that reached an instance and then failed or timed out is not
//! sent elsewhere, since the instance may have applied it, unless it carries an idempotency key. Every request has a deadline, so a
//! slow or dead service gives the caller an error naming it, not a hang.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use anyhow::{Context, bail};
use reqwest::header::{ALLOW, CONTENT_TYPE, HeaderMap, HeaderName, RETRY_AFTER};

pub struct Upstream {
    /// The service's name (`order`, …), for error messages.
    pub service: &'static str,
    instances: Vec<String>,
    /// The position of the instance whose turn is next.
    turn: AtomicUsize,
    client: reqwest::Client,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the {service} service is not answering")]
    Down { service: &'static str },
    #[error("the {service} service did not answer within {timeout:?}")]
    TimedOut {
        service: &'static str,
        timeout: Duration,
    },
    #[error("the {service} service failed while answering")]
    Failed {
        service: &'static str,
        #[source]
        cause: reqwest::Error,
    },
}

/// How long the gateway waits for a service: to accept a connection, and for a whole answer.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// The client every upstream shares (one connection pool).
pub fn client(timeouts: Timeouts) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .build()
        .context("cannot build the upstream HTTP client")
}

impl Upstream {
    /// `urls` is a comma-separated list of base URLs, such as `http://127.0.0.1:8081`.
    pub fn new(
        service: &'static str,
        urls: &str,
        client: reqwest::Client,
        timeouts: Timeouts,
    ) -> anyhow::Result<Self> {
        let instances: Vec<String> = urls
            .split(',')
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
            .collect();
        if instances.is_empty() {
            bail!("no URL given for the {service} service");
        }
        Ok(Upstream {
            service,
            instances,
            turn: AtomicUsize::new(0),
            client,
            timeout: timeouts.request,
        })
    }

    /// Every instance once, starting with the one whose turn it is.
    fn rotation(&self) -> impl Iterator<Item = &str> {
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let count = self.instances.len();
        (0..count).map(move |i| self.instances[(start + i) % count].as_str())
    }

    /// Sends the request that `build` makes for an instance's base URL, failing over to the
    /// next instance while the connection is refused, and reads the whole answer. A request
    /// that is `repeatable` (a GET, or a POST with an idempotency key) also fails over when an
    /// instance took it and then closed the connection without answering (it was stopping or
    /// died), though not when it timed out.
    pub async fn send(
        &self,
        repeatable: bool,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Answer, UpstreamError> {
        for base in self.rotation() {
            let answer = match build(&self.client, base).send().await {
                Ok(answer) => answer,
                Err(e) if e.is_connect() || (repeatable && !e.is_timeout()) => {
                    tracing::warn!(
                        upstream = base,
                        error.message = causes(&e),
                        "instance unreachable or gone, trying the next"
                    );
                    continue;
                }
                Err(e) => return Err(self.failure(e)),
            };
            let status = answer.status();
            let headers = PASSED_ON
                .iter()
                .filter_map(|name| Some((name.clone(), answer.headers().get(name)?.clone())))
                .collect();
            let body = answer.bytes().await.map_err(|e| self.failure(e))?;
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
        Err(UpstreamError::Down {
            service: self.service,
        })
    }

    fn failure(&self, cause: reqwest::Error) -> UpstreamError {
        tracing::warn!(
            service = self.service,
            error.message = causes(&cause),
            "upstream request failed"
        );
        if cause.is_timeout() {
            UpstreamError::TimedOut {
                service: self.service,
                timeout: self.timeout,
            }
        } else {
            UpstreamError::Failed {
                service: self.service,
                cause,
            }
        }
    }
}

/// An error with its causes, `error: cause: cause`: reqwest's own message names only the URL.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// The headers of a service's answer that mean something to the client, passed on unchanged:
/// what the body is, the methods a 405 names, when to retry after a 503, and that a POST was
/// a retry of one with the same idempotency key.
const PASSED_ON: [HeaderName; 4] = [
    CONTENT_TYPE,
    ALLOW,
    RETRY_AFTER,
    HeaderName::from_static("idempotent-replayed"),
];

/// A service's whole answer.
pub struct Answer {
    pub status: reqwest::StatusCode,
    /// The answer's headers among [`PASSED_ON`].
    pub headers: HeaderMap,
    pub body: axum::body::Bytes,
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Router, routing::get};

    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        connect: Duration::from_secs(1),
        request: Duration::from_millis(300),
    };

    fn upstream(urls: &[String]) -> Upstream {
        let client = client(TIMEOUTS).unwrap();
        Upstream::new("order", &urls.join(","), client, TIMEOUTS).unwrap()
    }

    /// An instance that answers its name after `delay`, counting the requests it got.
    async fn instance(name: &'static str, delay: Duration) -> (String, Arc<AtomicUsize>) {
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let app = Router::new().route(
            "/orders",
            get(move || async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                name
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, served)
    }

    /// The URL of a port where nothing listens: connections to it are refused.
    fn dead_instance() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    async fn get_orders(upstream: &Upstream) -> Result<String, UpstreamError> {
        let answer = upstream
            .send(true, |client, base| client.get(format!("{base}/orders")))
            .await?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    #[test]
    fn a_list_of_urls_is_split_trimmed_and_must_not_be_empty() {
        let client = client(TIMEOUTS).unwrap();
        let upstream = Upstream::new(
            "order",
            " http://a:1/, http://b:2 ,",
            client.clone(),
            TIMEOUTS,
        )
        .unwrap();
        assert_eq!(upstream.instances, ["http://a:1", "http://b:2"]);
        assert!(Upstream::new("order", " , ", client, TIMEOUTS).is_err());
    }

    #[test]
    fn each_request_starts_at_the_next_instance_and_tries_every_one_once() {
        let urls: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let upstream = upstream(&urls);
        let rotations: Vec<Vec<&str>> = (0..4).map(|_| upstream.rotation().collect()).collect();
        assert_eq!(
            rotations,
            [
                ["a", "b", "c"],
                ["b", "c", "a"],
                ["c", "a", "b"],
                ["a", "b", "c"]
            ]
        );
    }

    #[tokio::test]
    async fn requests_are_spread_over_the_instances() {
        let (a, served_a) = instance("a", Duration::ZERO).await;
        let (b, served_b) = instance("b", Duration::ZERO).await;
        let upstream = upstream(&[a, b]);
        for _ in 0..4 {
            get_orders(&upstream).await.unwrap();
        }
        assert_eq!(served_a.load(Ordering::SeqCst), 2);
        assert_eq!(served_b.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_instance_that_refuses_the_connection_is_skipped() {
        let (alive, served) = instance("alive", Duration::ZERO).await;
        let upstream = upstream(&[dead_instance(), alive]);
        for _ in 0..3 {
            assert_eq!(get_orders(&upstream).await.unwrap(), "alive");
        }
        assert_eq!(served.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn when_every_instance_refuses_the_service_is_named_as_down() {
        let upstream = upstream(&[dead_instance(), dead_instance()]);
        let error = get_orders(&upstream).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Down { service: "order" }));
        assert_eq!(error.to_string(), "the order service is not answering");
    }

    #[tokio::test]
    async fn a_request_that_timed_out_is_not_sent_to_another_instance() {
        let (slow, served_slow) = instance("slow", Duration::from_secs(5)).await;
        let (fast, served_fast) = instance("fast", Duration::ZERO).await;
        let upstream = upstream(&[slow, fast]);
        let error = get_orders(&upstream).await.unwrap_err();
        assert!(
            matches!(
                error,
                UpstreamError::TimedOut {
                    service: "order",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(served_slow.load(Ordering::SeqCst), 1);
        assert_eq!(served_fast.load(Ordering::SeqCst), 0);
    }
}
