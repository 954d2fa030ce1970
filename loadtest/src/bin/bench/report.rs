//! The figures of a run: the table printed at the end, the JSON (every figure, with the
//! machine it was measured on) and the chart, and the verdicts read from them. The verdicts
//! say what a rate achieved against the targets of saga-rules §7; nothing here fails a run for
//! speed.

use std::{
    collections::BTreeMap,
    fmt::Write,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;
use loadtest::{
    chart::{self, Chart, ChartPoint},
    percentiles::Percentiles,
};
use serde::Serialize;

use crate::{deadlines::Deadlines, machine::Machine, startup::Startup};

/// The targets of saga-rules §7, for the verdicts and the chart.
pub const TARGET_RATE: f64 = 400.0;
pub const LATENCY_TARGET_MS: f64 = 100.0;
pub const CPU_TARGET_MS: f64 = 4.0;
pub const LATENESS_TARGET_MS: f64 = 20.0;
/// A rate is kept up with when at least this share of it was reached.
pub const KEPT_UP: f64 = 0.95;

/// The figures of one offered rate.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Sagas offered per second.
    pub offered: f64,
    /// Seconds of load planned, and how long sending took with every answer.
    pub duration_s: f64,
    pub load_s: f64,
    pub sent: usize,
    /// Orders answered 201.
    pub created: usize,
    pub post_failures: usize,
    pub first_post_failure: Option<String>,
    pub approved: usize,
    pub rejected: usize,
    /// Created sagas that had not ended when the run stopped waiting for them.
    pub unsettled: usize,
    /// Created sagas not yet ended when the last POST had its answer: a handful is the
    /// latency at work, hundreds mean the stack fell behind.
    pub open_at_load_end: usize,
    /// From the end of the load until every saga had ended.
    pub tail_s: f64,
    /// Approved sagas per second, from the first `OrderCreated` to the last `OrderPlaced`.
    pub reached_per_s: f64,
    /// End-to-end: `OrderPlaced` − `OrderCreated` of each approved saga, from the events' own
    /// timestamps.
    pub latency_ms: Option<Percentiles>,
    /// The same from the Kafka records' timestamps (when each reached the topic).
    pub topic_latency_ms: Option<Percentiles>,
    /// The client's: from sending `POST /orders` to its answer.
    pub answer_ms: Option<Percentiles>,
    /// The latest the generator sent an order after its planned instant.
    pub max_send_lag_ms: f64,
    /// Per process (`order-1`, `gateway`, `kafka`, `postgres`); none if it restarted.
    pub cpu_ms_per_saga: BTreeMap<String, Option<f64>>,
    /// The benchmark's own CPU per saga (the load, the polling), not in the total.
    pub generator_cpu_ms_per_saga: f64,
    /// Per service database.
    pub commits_per_saga: BTreeMap<String, f64>,
}

impl Point {
    /// CPU per saga over every process measured.
    pub fn cpu_total(&self) -> f64 {
        self.cpu_ms_per_saga.values().flatten().sum()
    }

    pub fn commits_total(&self) -> f64 {
        self.commits_per_saga.values().sum()
    }

    fn p99(&self) -> Option<f64> {
        self.latency_ms.map(|latency| latency.p99)
    }
}

/// The stack could not keep up with the rate: higher ones would only take longer to say so.
pub fn saturated(point: &Point) -> bool {
    point.unsettled > 0 || point.reached_per_s < KEPT_UP * point.offered
}

/// The rate met the latency target with every saga approved, and was kept up with.
pub fn passes(point: &Point) -> bool {
    point.p99().is_some_and(|p99| p99 <= LATENCY_TARGET_MS)
        && point.post_failures == 0
        && point.approved == point.created
        && !saturated(point)
}

/// The highest rate that [`passes`].
pub fn best_rate(points: &[Point]) -> Option<f64> {
    points
        .iter()
        .filter(|point| passes(point))
        .map(|point| point.offered)
        .max_by(f64::total_cmp)
}

/// How much each counter grew between two readings, divided by `divisor`.
pub fn per(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
    divisor: f64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, end)| {
            let grown = (end - before.get(name).copied().unwrap_or(*end)) as f64;
            (
                name.clone(),
                if divisor > 0.0 { grown / divisor } else { 0.0 },
            )
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Idle {
    pub seconds: f64,
    pub cpu_ms_per_s: BTreeMap<String, Option<f64>>,
    pub commits_per_s: BTreeMap<String, f64>,
    /// Resident memory of each service instance and the gateway, in MB.
    pub rss_mb: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub instance: String,
    pub idle_mb: f64,
    pub after_load_mb: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Targets {
    pub rate_per_s: f64,
    pub latency_p99_ms: f64,
    pub cpu_ms_per_saga: f64,
    pub deadline_lateness_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub targets: Targets,
    pub startup: Vec<Startup>,
    pub idle: Idle,
    pub memory: Vec<Memory>,
    pub points: Vec<Point>,
    /// The highest rate with p99 within target, every saga approved and the rate kept up with.
    pub best_rate: Option<f64>,
    pub deadlines: Option<Deadlines>,
}

/// Processes in the order a reader looks for them: the services, the gateway, the broker, the
/// database.
fn rank(name: &str) -> (usize, &str) {
    let kind = kind(name);
    let order = [
        "order", "exchange", "point", "deadline", "gateway", "kafka", "postgres",
    ];
    (
        order.iter().position(|k| *k == kind).unwrap_or(order.len()),
        name,
    )
}

/// Every name once, ranked.
fn ranked<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut names: Vec<&String> = names.collect();
    names.sort_by_key(|name| rank(name));
    names.dedup();
    names
}

/// `order-2` → `order`.
fn kind(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((kind, n)) if n.parse::<u32>().is_ok() => kind,
        _ => name,
    }
}

fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |value| format!("{value:.decimals$}"))
}

/// p50, p90, p99 and max of a sample as the table shows them, or dashes for none.
fn quantiles(sample: Option<Percentiles>, decimals: usize) -> [String; 4] {
    let at = |pick: fn(Percentiles) -> f64| figure(sample.map(pick), decimals);
    [at(|p| p.p50), at(|p| p.p90), at(|p| p.p99), at(|p| p.max)]
}

/// The line printed when a rate has been measured.
pub fn point_line(point: &Point) -> String {
    let [p50, _, p99, max] = quantiles(point.latency_ms, 0);
    format!(
        "{}/s: reached {:.1}/s, {} of {} approved; latency p50 {} p99 {} max {} ms; CPU {:.2} ms and {:.1} commits per saga",
        point.offered,
        point.reached_per_s,
        point.approved,
        point.created,
        p50,
        p99,
        max,
        point.cpu_total(),
        point.commits_total(),
    )
}

impl Report {
    pub fn new(
        machine: Machine,
        startup: Vec<Startup>,
        idle: Idle,
        memory: Vec<Memory>,
        points: Vec<Point>,
        deadlines: Option<Deadlines>,
    ) -> Report {
        Report {
            machine,
            targets: Targets {
                rate_per_s: TARGET_RATE,
                latency_p99_ms: LATENCY_TARGET_MS,
                cpu_ms_per_saga: CPU_TARGET_MS,
                deadline_lateness_p99_ms: LATENESS_TARGET_MS,
            },
            startup,
            idle,
            memory,
            best_rate: best_rate(&points),
            points,
            deadlines,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}\n", self.machine.describe());
        let _ = writeln!(
            out,
            "{:>7} {:>9} {:>11} {:>8} {:>6}  {:>34}  {:>11}  {:>6} {:>7}  p99 within",
            "offered",
            "reached",
            "approved",
            "open at",
            "tail",
            "end-to-end latency (ms)",
            "POST (ms)",
            "CPU ms",
            "commits",
        );
        let _ = writeln!(
            out,
            "{:>7} {:>9} {:>11} {:>8} {:>6}  {:>6} {:>6} {:>6} {:>6} {:>6}  {:>5} {:>5}  {:>6} {:>7}  100 ms",
            "/s",
            "/s",
            "of created",
            "load end",
            "s",
            "p50",
            "p90",
            "p99",
            "max",
            "topic",
            "p50",
            "p99",
            "/saga",
            "/saga",
        );
        for point in &self.points {
            let [p50, p90, p99, max] = quantiles(point.latency_ms, 0);
            let [_, _, topic_p99, _] = quantiles(point.topic_latency_ms, 0);
            let [answer_p50, _, answer_p99, _] = quantiles(point.answer_ms, 1);
            let _ = writeln!(
                out,
                "{:>7} {:>9.1} {:>11} {:>8} {:>6.1}  {:>6} {:>6} {:>6} {:>6} {:>6}  {:>5} {:>5}  {:>6.2} {:>7.1}  {}",
                point.offered,
                point.reached_per_s,
                format!("{}/{}", point.approved, point.created),
                point.open_at_load_end,
                point.tail_s,
                p50,
                p90,
                p99,
                max,
                topic_p99,
                answer_p50,
                answer_p99,
                point.cpu_total(),
                point.commits_total(),
                if passes(point) {
                    "yes"
                } else if saturated(point) {
                    "no (fell behind)"
                } else {
                    "no"
                },
            );
        }
        let _ = writeln!(
            out,
            "  latency: OrderPlaced minus OrderCreated, from the events' own timestamps; topic: its \
             p99 from the Kafka records' timestamps"
        );
        for point in self
            .points
            .iter()
            .filter(|point| point.post_failures > 0 || point.unsettled > 0)
        {
            let _ = writeln!(
                out,
                "  at {}/s: {} POSTs failed ({}), {} sagas unsettled",
                point.offered,
                point.post_failures,
                point.first_post_failure.as_deref().unwrap_or("-"),
                point.unsettled
            );
        }

        let _ = writeln!(
            out,
            "\nper saga, by process{}",
            self.points
                .iter()
                .map(|p| format!("{:>9}", format!("{}/s", p.offered)))
                .collect::<String>()
        );
        let row = |value: &dyn Fn(&Point) -> Option<f64>| -> String {
            self.points
                .iter()
                .map(|p| format!("{:>9}", figure(value(p), 2)))
                .collect()
        };
        for name in ranked(self.points.iter().flat_map(|p| p.cpu_ms_per_saga.keys())) {
            let cpu = row(&|p| p.cpu_ms_per_saga.get(name).copied().flatten());
            let _ = writeln!(out, "  CPU ms {name:<13}{cpu}");
        }
        let _ = writeln!(
            out,
            "  CPU ms total        {}",
            row(&|p| Some(p.cpu_total()))
        );
        let _ = writeln!(
            out,
            "  CPU ms load (bench) {}  (the benchmark itself, not in the total)",
            row(&|p| Some(p.generator_cpu_ms_per_saga))
        );
        for database in ranked(self.points.iter().flat_map(|p| p.commits_per_saga.keys())) {
            let commits = row(&|p| p.commits_per_saga.get(database).copied());
            let _ = writeln!(out, "  commits {database:<12}{commits}");
        }
        let _ = writeln!(
            out,
            "  commits total       {}",
            row(&|p| Some(p.commits_total()))
        );

        let idle = &self.idle;
        let mut idle_cpu: Vec<(&String, &Option<f64>)> = idle.cpu_ms_per_s.iter().collect();
        idle_cpu.sort_by_key(|(name, _)| rank(name));
        let _ = writeln!(
            out,
            "\nidle over {:.0} s: CPU ms per second {}; commits per second {:.1}",
            idle.seconds,
            idle_cpu
                .iter()
                .map(|(name, ms)| format!("{name} {}", figure(**ms, 1)))
                .collect::<Vec<_>>()
                .join(", "),
            idle.commits_per_s.values().sum::<f64>(),
        );

        let _ = writeln!(
            out,
            "\n{:<12} {:>9} {:>12} {:>18}",
            "instance", "ready ms", "RSS idle MB", "RSS after load MB"
        );
        let mut memory: Vec<&Memory> = self.memory.iter().collect();
        memory.sort_by_key(|m| rank(&m.instance));
        for m in memory {
            let ready = self
                .startup
                .iter()
                .find(|s| s.instance == m.instance)
                .map(|s| s.ready_ms);
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>12.1} {:>18}",
                m.instance,
                figure(ready, 0),
                m.idle_mb,
                figure(m.after_load_mb, 1)
            );
        }

        if let Some(d) = &self.deadlines {
            let [p50, p90, p99, max] = quantiles(d.lateness_ms, 1);
            let _ = writeln!(
                out,
                "\ndeadline precision: {} of {} deadlines fired with {} pending; lateness p50 {} ms, p90 {} ms, p99 {} ms, max {} ms{}",
                d.fired,
                d.orders,
                d.pending,
                p50,
                p90,
                p99,
                max,
                if d.unsettled > 0 {
                    format!("; {} orders not compensated in time", d.unsettled)
                } else {
                    String::new()
                },
            );
        }
        let _ = writeln!(
            out,
            "\nhighest rate with p99 within {LATENCY_TARGET_MS} ms, every saga approved and at least {:.0}% of it reached: {}",
            KEPT_UP * 100.0,
            self.best_rate
                .map_or("none".into(), |rate| format!("{rate}/s")),
        );
        let _ = write!(
            out,
            "the targets of docs/saga-rules.md §7, for reference: {TARGET_RATE}/s sustained \
             with p99 within {LATENCY_TARGET_MS} ms, \
             at most {CPU_TARGET_MS} ms CPU per saga, deadline lateness p99 within {LATENESS_TARGET_MS} ms with 100,000 pending"
        );
        out
    }

    pub fn chart(&self) -> Chart {
        let m = &self.machine;
        Chart {
            title: format!("Saga benchmark, {}", m.date),
            subtitle: format!(
                "commit {}{}, {} build, {} instance(s) of each service; {} × {}, load average {:.2} before",
                m.commit,
                if m.dirty { "+" } else { "" },
                m.profile,
                m.instances,
                m.cpus,
                m.cpu_model,
                m.load_before[0]
            ),
            points: self.points.iter().map(chart_point).collect(),
            latency_target_ms: LATENCY_TARGET_MS,
            cpu_target_ms: CPU_TARGET_MS,
        }
    }

    /// Writes `bench-STAMP.json` and `.svg` under `dir`, copies them to `latest.*` beside them,
    /// and, given a `chart` path, the SVG there too and a PNG beside the run's SVG (if Chromium
    /// can draw it). Returns the files written, the `latest.*` copies left out.
    pub fn write(&self, dir: &Path, chart: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stamp: String = self
            .machine
            .date
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let json = serde_json::to_string_pretty(self)?;
        let svg = chart::svg(&self.chart())?;
        let mut written = Vec::new();
        for (extension, content) in [("json", &json), ("svg", &svg)] {
            let path = dir.join(format!("bench-{stamp}.{extension}"));
            write(&path, content)?;
            write(&dir.join(format!("latest.{extension}")), content)?;
            written.push(path);
        }
        if let Some(chart) = chart {
            if let Some(parent) = chart.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            write(chart, &svg)?;
            written.push(chart.to_path_buf());
            if let Some(png) = png(&written[1]) {
                written.push(png);
            }
        }
        Ok(written)
    }
}

fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))
}

/// A rate as the chart shows it: the instances of a service summed.
fn chart_point(point: &Point) -> ChartPoint {
    let mut cpu: Vec<(String, f64)> = Vec::new();
    let mut names: Vec<&String> = point.cpu_ms_per_saga.keys().collect();
    names.sort_by_key(|name| rank(name));
    for name in names {
        let ms = point.cpu_ms_per_saga[name].unwrap_or(0.0);
        match cpu.iter_mut().find(|(k, _)| k == kind(name)) {
            Some((_, total)) => *total += ms,
            None => cpu.push((kind(name).to_string(), ms)),
        }
    }
    ChartPoint {
        offered: point.offered,
        latency: point.latency_ms.map(|l| [l.p50, l.p90, l.p99]),
        cpu,
    }
}

/// The chart drawn as PNG by headless Chromium, if it is installed; a picture for those who
/// cannot open SVG. Nothing is lost without it.
fn png(svg: &Path) -> Option<PathBuf> {
    let png = svg.with_extension("png");
    let output = Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={},{}", chart::WIDTH, chart::HEIGHT))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.canonicalize().ok()?.display()))
        .output()
        .ok()?;
    (output.status.success() && png.exists()).then_some(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(offered: f64, p99: f64, reached: f64) -> Point {
        Point {
            offered,
            duration_s: 10.0,
            load_s: 10.0,
            sent: 100,
            created: 100,
            post_failures: 0,
            first_post_failure: None,
            approved: 100,
            rejected: 0,
            unsettled: 0,
            open_at_load_end: 3,
            tail_s: 0.1,
            reached_per_s: reached,
            latency_ms: Some(Percentiles {
                count: 100,
                p50: p99 / 2.0,
                p90: p99 * 0.8,
                p99,
                max: p99 * 1.5,
            }),
            topic_latency_ms: None,
            answer_ms: None,
            max_send_lag_ms: 1.0,
            cpu_ms_per_saga: [
                ("order-1".to_string(), Some(1.5)),
                ("kafka".to_string(), Some(2.0)),
                ("point-1".to_string(), None),
            ]
            .into_iter()
            .collect(),
            generator_cpu_ms_per_saga: 0.2,
            commits_per_saga: [("order".to_string(), 2.0), ("point".to_string(), 1.5)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn a_rate_passes_with_p99_within_target_all_approved_and_kept_up_with() {
        assert!(passes(&point(100.0, 40.0, 99.0)));
        assert!(passes(&point(100.0, 100.0, 95.0)));
    }

    #[test]
    fn a_rate_fails_with_a_slow_p99_a_saga_not_approved_or_a_rate_not_reached() {
        assert!(!passes(&point(100.0, 101.0, 99.0)));
        assert!(!passes(&point(100.0, 40.0, 94.0)));
        let mut rejected = point(100.0, 40.0, 99.0);
        rejected.approved = 99;
        assert!(!passes(&rejected));
        let mut failed = point(100.0, 40.0, 99.0);
        failed.post_failures = 1;
        assert!(!passes(&failed));
    }

    #[test]
    fn a_rate_with_sagas_still_open_after_the_wait_is_saturated() {
        let mut open = point(100.0, 40.0, 99.0);
        open.unsettled = 1;
        assert!(saturated(&open));
        assert!(saturated(&point(200.0, 40.0, 150.0)));
        assert!(!saturated(&point(200.0, 400.0, 199.0)));
    }

    #[test]
    fn the_best_rate_is_the_highest_that_passes_even_above_one_that_failed() {
        let points = [
            point(50.0, 20.0, 50.0),
            point(100.0, 120.0, 99.0),
            point(200.0, 60.0, 198.0),
            point(300.0, 900.0, 150.0),
        ];
        assert_eq!(best_rate(&points), Some(200.0));
        assert_eq!(best_rate(&points[3..]), None);
    }

    #[test]
    fn totals_add_the_processes_measured_and_leave_out_the_rest() {
        let p = point(100.0, 40.0, 99.0);
        assert_eq!(p.cpu_total(), 3.5);
        assert_eq!(p.commits_total(), 3.5);
    }

    #[test]
    fn per_divides_what_each_counter_grew() {
        let before = [("order".to_string(), 100), ("point".to_string(), 50)]
            .into_iter()
            .collect();
        let after = [
            ("order".to_string(), 400),
            ("point".to_string(), 50),
            ("new".to_string(), 9),
        ]
        .into_iter()
        .collect();
        let per = per(&before, &after, 100.0);
        assert_eq!((per["order"], per["point"], per["new"]), (3.0, 0.0, 0.0));
        assert_eq!(super::per(&before, &before, 0.0)["order"], 0.0);
    }

    #[test]
    fn processes_are_listed_services_first_and_instances_grouped_by_kind() {
        let mut names = vec![
            "postgres",
            "kafka",
            "gateway",
            "deadline-1",
            "order-2",
            "order-1",
            "exchange-1",
        ];
        names.sort_by_key(|name| rank(name));
        assert_eq!(
            names,
            vec![
                "order-1",
                "order-2",
                "exchange-1",
                "deadline-1",
                "gateway",
                "kafka",
                "postgres"
            ]
        );
        assert_eq!(kind("order-2"), "order");
        assert_eq!(kind("kafka"), "kafka");
    }

    #[test]
    fn the_chart_sums_the_instances_of_a_service() {
        let mut p = point(100.0, 40.0, 99.0);
        p.cpu_ms_per_saga.insert("order-2".into(), Some(0.5));
        let chart = ChartPoint {
            offered: 100.0,
            latency: Some([20.0, 32.0, 40.0]),
            cpu: vec![
                ("order".into(), 2.0),
                ("point".into(), 0.0),
                ("kafka".into(), 2.0),
            ],
        };
        assert_eq!(chart_point(&p), chart);
    }
}
