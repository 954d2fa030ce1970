//! One offered rate: an open-loop load through the gateway, and what it cost.
//!
//! **Open loop.** Order i is sent at start + i/rate, whatever became of the ones before: each
//! POST runs in its own task on one keep-alive client, so a slow answer never delays the next
//! order, and the offered load never depends on the stack's answers (a closed loop, which
//! sends the next order when the last answered, measures its own waiting instead). How late
//! the generator itself sent each order is recorded: a busy machine shows there.
//!
//! **Latency** is taken from the events' own timestamps on the topic, `OrderPlaced` minus
//! `OrderCreated` of each order: the time from the order's creation to its approval, as the
//! services saw it, with nothing of the client or the gateway in it. The topic is read from
//! its ends marked before the load, once every saga has ended.
//!
//! **The window** in which CPU time is counted opens right before the first order and closes
//! once the deadline service has consumed every saga's `OrderPlaced` or `OrderRejected` (the
//! last step of a saga, [`crate::Bench::sagas_ended`]) plus [`GRACE`], so the whole work of
//! every saga is in it, and little else: the stack's idle cost over those seconds, which the
//! idle figures show. The topic is read after the window closes.
//!
//! **Commits** are PostgreSQL's own count, read [`crate::STATS_FLUSH`] after the window (see
//! there why), from the reading that ended the rate before: they include the stack's idle
//! commits over that pause, which the idle figures show too.
//!
//! **Throughput reached** is the approved sagas divided by the time from the first
//! `OrderCreated` to the last `OrderPlaced`: when the stack falls behind, the time it takes to
//! catch up counts, and so does every saga still open when the load ended.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use harness::topic::Event;
use loadtest::{gateway::Gateway, percentiles::Percentiles, procfs};
use rust_decimal::Decimal;
use tokio::task::JoinSet;

use crate::{AMOUNT, Bench, Progress, STATS_FLUSH, report::Point};

/// After the last saga ended: time for the work that follows it by milliseconds (the deadline
/// service's offset commit, the order service's relay marking `OrderPlaced` published).
const GRACE: Duration = Duration::from_millis(200);
/// How often the end of a run is looked for.
const POLL: Duration = Duration::from_millis(50);

/// What the load sent and what the gateway answered.
#[derive(Debug, Default)]
pub struct Posted {
    /// Orders sent.
    pub sent: usize,
    /// The ids of the orders created (answered 201).
    pub created: Vec<i64>,
    /// Milliseconds from sending each created order to its answer.
    pub answer_ms: Vec<f64>,
    /// Why POSTs failed.
    pub failures: Vec<String>,
    /// The latest the generator sent an order after its planned instant, in milliseconds.
    pub max_send_lag_ms: f64,
}

/// Sends `count` orders open loop at `rate` per second, to the holders in turn, and waits for
/// every answer, with a line of progress now and then.
pub async fn drive(gateway: &Gateway, holders: Arc<[String]>, rate: f64, count: usize) -> Posted {
    let mut posted = Posted::default();
    let mut posts = JoinSet::new();
    let mut progress = Progress::new();
    let start = Instant::now();
    for i in 0..count {
        let planned = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(planned.into()).await;
        posted.max_send_lag_ms = posted.max_send_lag_ms.max(ms(planned.elapsed()));
        let (gateway, holders) = (gateway.clone(), holders.clone());
        posts.spawn(async move {
            let sent = Instant::now();
            let holder = &holders[i % holders.len()];
            let answer = gateway.place_order(holder, Decimal::from(AMOUNT)).await;
            (answer, sent.elapsed())
        });
        posted.sent += 1;
        while let Some(done) = posts.try_join_next() {
            posted.record(done);
        }
        if progress.due() {
            println!(
                "  {} of {count} orders sent, {} created, {} POSTs failed",
                posted.sent,
                posted.created.len(),
                posted.failures.len()
            );
        }
    }
    while let Some(done) = posts.join_next().await {
        posted.record(done);
    }
    posted
}

impl Posted {
    fn record(&mut self, done: Result<(anyhow::Result<i64>, Duration), tokio::task::JoinError>) {
        match done {
            Ok((Ok(id), took)) => {
                self.created.push(id);
                self.answer_ms.push(ms(took));
            }
            Ok((Err(e), _)) => self.failures.push(format!("{e:#}")),
            Err(e) => self.failures.push(e.to_string()),
        }
    }
}

/// Measures one rate; returns its figures and the commit counts it ended on.
pub async fn measure(
    bench: &Bench,
    holders: Arc<[String]>,
    rate: f64,
    duration: f64,
    commits_before: &BTreeMap<String, i64>,
) -> anyhow::Result<(Point, BTreeMap<String, i64>)> {
    let count = ((rate * duration).round() as usize).max(1);
    println!("{rate}/s for {duration} s: {count} orders");
    let marks = {
        let topic = bench.topic.clone();
        tokio::task::spawn_blocking(move || topic.ends()).await??
    };
    let processes = bench.processes()?;
    let ended_before = bench.sagas_ended().await?;
    let own_before = procfs::stat(std::process::id())?;
    let cpu_before = procfs::sample_cpu(&processes)?;

    let started = Instant::now();
    let posted = drive(&bench.gateway, holders, rate, count).await;
    let load_seconds = started.elapsed().as_secs_f64();
    let created = posted.created.len() as u64;
    // A counter only falls if a deadline instance restarted: then nothing here is exact.
    let ended_since = async || anyhow::Ok(bench.sagas_ended().await?.saturating_sub(ended_before));
    let open_at_load_end = created.saturating_sub(ended_since().await?);
    let load_ended = Instant::now();
    let mut progress = Progress::new();
    let ended = loop {
        let ended = ended_since().await?;
        if ended >= created || load_ended.elapsed() >= bench.settle_timeout {
            break ended;
        }
        if progress.due() {
            println!("  {ended} of {created} sagas ended");
        }
        tokio::time::sleep(POLL).await;
    };
    let tail = load_ended.elapsed();
    tokio::time::sleep(GRACE).await;
    let cpu_after = procfs::sample_cpu(&processes)?;
    let own_after = procfs::stat(std::process::id())?;
    let window_closed = Instant::now();

    let events = {
        let topic = bench.topic.clone();
        tokio::task::spawn_blocking(move || topic.read_since(&marks)).await??
    };
    let sagas = Sagas::of(&events, &posted.created);
    println!(
        "  reading PostgreSQL's commit counts {} s after the load (it publishes them late)",
        STATS_FLUSH.as_secs()
    );
    tokio::time::sleep_until((window_closed + STATS_FLUSH).into()).await;
    let commits_after = bench.commits().await?;

    let own_time = own_after.own_time().saturating_sub(own_before.own_time());
    let per_saga = |value: f64| {
        if ended == 0 {
            0.0
        } else {
            value / ended as f64
        }
    };
    let point = Point {
        offered: rate,
        duration_s: duration,
        load_s: load_seconds,
        sent: posted.sent,
        created: posted.created.len(),
        post_failures: posted.failures.len(),
        first_post_failure: posted.failures.first().cloned(),
        approved: sagas.approved,
        rejected: sagas.rejected,
        unsettled: created.saturating_sub(ended) as usize,
        open_at_load_end: open_at_load_end as usize,
        tail_s: tail.as_secs_f64(),
        reached_per_s: sagas.reached(),
        latency_ms: Percentiles::of(sagas.latency_ms),
        topic_latency_ms: Percentiles::of(sagas.topic_latency_ms),
        answer_ms: Percentiles::of(posted.answer_ms),
        max_send_lag_ms: posted.max_send_lag_ms,
        cpu_ms_per_saga: procfs::cpu_used(&cpu_before, &cpu_after)
            .into_iter()
            .map(|(name, used)| (name, used.map(|used| per_saga(ms(used)))))
            .collect(),
        generator_cpu_ms_per_saga: per_saga(ms(own_time)),
        commits_per_saga: crate::report::per(commits_before, &commits_after, ended as f64),
    };
    Ok((point, commits_after))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// What the topic says of a run's sagas.
#[derive(Debug, Default, PartialEq)]
pub struct Sagas {
    pub approved: usize,
    pub rejected: usize,
    /// `OrderPlaced` − `OrderCreated` of each approved saga, in milliseconds, from the events'
    /// own timestamps.
    pub latency_ms: Vec<f64>,
    /// The same from the Kafka records' timestamps: from `OrderCreated` reaching the topic to
    /// `OrderPlaced` reaching it.
    pub topic_latency_ms: Vec<f64>,
    /// The first `OrderCreated` and the last `OrderPlaced`, in epoch milliseconds.
    pub span: Option<(i64, i64)>,
}

impl Sagas {
    /// The sagas of the orders `ids` among `events`. An event on the topic twice (a relay that
    /// crashed between publishing and marking) counts once, at its first copy.
    pub fn of(events: &[Event], ids: &[i64]) -> Sagas {
        let ids: HashSet<i64> = ids.iter().copied().collect();
        let mut sagas: HashMap<i64, [Option<&Event>; 3]> = HashMap::new();
        for event in events.iter().filter(|event| ids.contains(&event.order_id)) {
            let slot = match event.event_type.as_str() {
                "OrderCreated" => 0,
                "OrderPlaced" => 1,
                "OrderRejected" => 2,
                _ => continue,
            };
            sagas.entry(event.order_id).or_default()[slot].get_or_insert(event);
        }
        let mut result = Sagas::default();
        for [created, placed, rejected] in sagas.into_values() {
            result.rejected += usize::from(rejected.is_some());
            let (Some(created), Some(placed)) = (created, placed) else {
                continue;
            };
            result.approved += 1;
            result
                .latency_ms
                .push((placed.timestamp - created.timestamp) as f64);
            if let (Some(from), Some(to)) = (created.published, placed.published) {
                result.topic_latency_ms.push((to - from) as f64);
            }
            let (created, placed) = (created.timestamp, placed.timestamp);
            result.span = Some(match result.span {
                None => (created, placed),
                Some((first, last)) => (first.min(created), last.max(placed)),
            });
        }
        result
    }

    /// Approved sagas per second over the time the stack took to approve them.
    pub fn reached(&self) -> f64 {
        match self.span {
            Some((first, last)) if last > first => {
                self.approved as f64 * 1000.0 / (last - first) as f64
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event its relay published 2 ms after it was made.
    fn event(order_id: i64, event_type: &str, timestamp: i64) -> Event {
        Event {
            event_type: event_type.into(),
            event_id: format!("{order_id}-{event_type}"),
            timestamp,
            order_id,
            published: Some(timestamp + 2),
        }
    }

    #[test]
    fn latency_is_placed_minus_created_for_the_runs_own_orders() {
        let events = [
            event(1, "OrderCreated", 1_000),
            event(2, "OrderCreated", 1_010),
            event(9, "OrderCreated", 1_015), // not this run's
            event(1, "ExchangeSucceed", 1_012),
            event(1, "OrderPlaced", 1_030),
            event(2, "OrderPlaced", 1_050),
            event(9, "OrderPlaced", 9_999),
        ];
        let sagas = Sagas::of(&events, &[1, 2]);
        let mut latency = sagas.latency_ms.clone();
        latency.sort_by(f64::total_cmp);
        assert_eq!((sagas.approved, sagas.rejected), (2, 0));
        assert_eq!(latency, vec![30.0, 40.0]);
        assert_eq!(sagas.span, Some((1_000, 1_050)));
    }

    #[test]
    fn the_topic_latency_is_taken_from_the_records_timestamps() {
        let mut placed = event(1, "OrderPlaced", 1_030);
        placed.published = Some(1_045);
        let mut unknown = event(2, "OrderPlaced", 1_050);
        unknown.published = None;
        let events = [
            event(1, "OrderCreated", 1_000),
            event(2, "OrderCreated", 1_010),
            placed,
            unknown,
        ];
        let sagas = Sagas::of(&events, &[1, 2]);
        assert_eq!(sagas.approved, 2);
        assert_eq!(sagas.topic_latency_ms, vec![43.0]);
    }

    #[test]
    fn an_event_published_twice_counts_at_its_first_copy() {
        let events = [
            event(1, "OrderCreated", 1_000),
            event(1, "OrderPlaced", 1_020),
            event(1, "OrderPlaced", 1_020),
            event(1, "OrderCreated", 1_000),
        ];
        let sagas = Sagas::of(&events, &[1]);
        assert_eq!((sagas.approved, sagas.latency_ms.clone()), (1, vec![20.0]));
    }

    #[test]
    fn rejected_and_unfinished_sagas_are_not_approved_and_have_no_latency() {
        let events = [
            event(1, "OrderCreated", 1_000),
            event(1, "OrderRejected", 1_020),
            event(2, "OrderCreated", 1_000),
        ];
        let sagas = Sagas::of(&events, &[1, 2, 3]);
        assert_eq!((sagas.approved, sagas.rejected), (0, 1));
        assert!(sagas.latency_ms.is_empty());
        assert_eq!(sagas.reached(), 0.0);
    }

    #[test]
    fn throughput_reached_counts_the_time_to_catch_up() {
        // 1,000 sagas created over 10 s; the last approved 15 s after the first was created.
        let mut events = Vec::new();
        for i in 0..1000 {
            events.push(event(i, "OrderCreated", 10 * i));
            events.push(event(i, "OrderPlaced", 10 * i + 5_000 * i / 999));
        }
        let ids: Vec<i64> = (0..1000).collect();
        let reached = Sagas::of(&events, &ids).reached();
        assert!((reached - 1000.0 / 14.99).abs() < 0.01, "{reached}");
    }
}
