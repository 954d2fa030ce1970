//! The benchmark's chart as a hand-written SVG: end-to-end latency percentiles (top, on a
//! logarithmic axis, since a saturated point is ten times slower than a healthy one) and the
//! CPU time per saga of each process, stacked (bottom), both against the offered rate, with
//! the targets as dashed lines. SVG is text: no drawing library, no fonts to ship, and any
//! browser shows it (GitHub too, in the README).

use std::fmt::Write;

/// One measured rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPoint {
    /// Sagas offered per second.
    pub offered: f64,
    /// End-to-end latency p50, p90 and p99 in milliseconds, if any saga completed.
    pub latency: Option<[f64; 3]>,
    /// CPU milliseconds per saga of each kind of process, in stacking order (bottom first).
    pub cpu: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub subtitle: String,
    pub points: Vec<ChartPoint>,
    pub latency_target_ms: f64,
    pub cpu_target_ms: f64,
}

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 680;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 760.0;
const LATENCY_PANEL: (f64, f64) = (320.0, 80.0);
const CPU_PANEL: (f64, f64) = (620.0, 400.0);
const PERCENTILES: [(&str, &str); 3] = [("p50", "#4e79a7"), ("p90", "#f28e2b"), ("p99", "#e15759")];
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

/// Maps a domain of values onto a range of pixels, linearly or by their logarithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    log: bool,
}

impl Scale {
    pub fn linear((lo, hi): (f64, f64), (from, to): (f64, f64)) -> Scale {
        Scale {
            lo,
            hi,
            from,
            to,
            log: false,
        }
    }

    /// A logarithmic scale; its domain must be positive.
    pub fn log((lo, hi): (f64, f64), (from, to): (f64, f64)) -> Scale {
        Scale {
            lo: lo.log10(),
            hi: hi.log10(),
            from,
            to,
            log: true,
        }
    }

    /// The pixel of `value`; values outside the domain land outside the range.
    pub fn at(&self, value: f64) -> f64 {
        let value = if self.log { value.log10() } else { value };
        let span = self.hi - self.lo;
        let t = if span == 0.0 {
            0.5
        } else {
            (value - self.lo) / span
        };
        self.from + t * (self.to - self.from)
    }
}

/// Round ticks from 0 to at least `max`: steps of 1, 2 or 5 times a power of ten, about five.
pub fn ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power);
    let count = (max / step - 1e-9).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// The powers of ten around `lo..hi`: the ticks of a logarithmic axis.
pub fn decades(lo: f64, hi: f64) -> Vec<f64> {
    let first = lo.max(f64::MIN_POSITIVE).log10().floor() as i32;
    let last = (hi.max(lo).log10().ceil() as i32).max(first + 1);
    (first..=last).map(|e| 10f64.powi(e)).collect()
}

pub fn svg(chart: &Chart) -> String {
    let mut chart = chart.clone();
    chart.points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    let chart = &chart;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    text(
        &mut out,
        20.0,
        28.0,
        "start",
        "font-size=\"17\" font-weight=\"bold\"",
        &chart.title,
    );
    text(
        &mut out,
        20.0,
        48.0,
        "start",
        "fill=\"#555\"",
        &chart.subtitle,
    );

    let max_rate = chart.points.iter().map(|p| p.offered).fold(0.0, f64::max);
    let x_ticks = ticks(max_rate * 1.05);
    let x = Scale::linear((0.0, *x_ticks.last().unwrap_or(&1.0)), (LEFT, RIGHT));

    // Latency, logarithmic, from a power of ten below the fastest p50 to one above the slowest
    // p99 (and the target).
    let latencies: Vec<f64> = chart
        .points
        .iter()
        .filter_map(|p| p.latency)
        .flatten()
        .collect();
    let lowest = latencies
        .iter()
        .copied()
        .fold(chart.latency_target_ms, f64::min)
        .max(0.1);
    let highest = latencies
        .iter()
        .copied()
        .fold(chart.latency_target_ms, f64::max);
    let y_ticks = decades(lowest, highest);
    let (first, last) = (y_ticks[0], y_ticks[y_ticks.len() - 1]);
    let y = Scale::log((first, last), LATENCY_PANEL);
    axes(
        &mut out,
        &x,
        &x_ticks,
        &y,
        &y_ticks,
        LATENCY_PANEL,
        "end-to-end latency (ms)",
    );
    target(
        &mut out,
        &x,
        y.at(chart.latency_target_ms),
        &format!("p99 target {} ms", chart.latency_target_ms),
    );
    for (i, (name, colour)) in PERCENTILES.iter().enumerate() {
        let points: Vec<(f64, f64)> = chart
            .points
            .iter()
            // A latency below the axis (0 ms: one clock tick) sits on it.
            .filter_map(|p| Some((x.at(p.offered), y.at(p.latency?[i].max(first)))))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (px, py) in points {
            let _ = writeln!(
                out,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{colour}"/>"#
            );
        }
        legend(
            &mut out,
            LATENCY_PANEL.1 + 10.0 + 20.0 * i as f64,
            colour,
            name,
        );
    }

    // CPU per saga, stacked by process.
    let kinds: Vec<&str> = {
        let mut kinds: Vec<&str> = Vec::new();
        for (kind, _) in chart.points.iter().flat_map(|p| &p.cpu) {
            if !kinds.contains(&kind.as_str()) {
                kinds.push(kind);
            }
        }
        kinds
    };
    let tallest = chart
        .points
        .iter()
        .map(|p| p.cpu.iter().map(|(_, ms)| ms).sum::<f64>())
        .fold(chart.cpu_target_ms, f64::max);
    let c_ticks = ticks(tallest * 1.05);
    let c = Scale::linear((0.0, *c_ticks.last().unwrap_or(&1.0)), CPU_PANEL);
    axes(
        &mut out,
        &x,
        &x_ticks,
        &c,
        &c_ticks,
        CPU_PANEL,
        "CPU per saga (ms)",
    );
    let spacing = chart
        .points
        .windows(2)
        .map(|w| (x.at(w[1].offered) - x.at(w[0].offered)).abs())
        .fold(RIGHT - LEFT, f64::min);
    let width = (spacing * 0.6).min(36.0);
    for point in &chart.points {
        let mut base = 0.0;
        for (kind, ms) in &point.cpu {
            let colour = colour_of(&kinds, kind);
            let (top, bottom) = (c.at(base + ms), c.at(base));
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{top:.1}" width="{width:.1}" height="{:.1}" fill="{colour}"><title>{} {kind}: {ms:.2} ms</title></rect>"#,
                x.at(point.offered) - width / 2.0,
                bottom - top,
                point.offered,
            );
            base += ms;
        }
    }
    target(
        &mut out,
        &x,
        c.at(chart.cpu_target_ms),
        &format!("target {} ms", chart.cpu_target_ms),
    );
    for (i, kind) in kinds.iter().enumerate() {
        legend(
            &mut out,
            CPU_PANEL.1 + 10.0 + 20.0 * i as f64,
            colour_of(&kinds, kind),
            kind,
        );
    }
    text(
        &mut out,
        (LEFT + RIGHT) / 2.0,
        CPU_PANEL.0 + 40.0,
        "middle",
        "",
        "offered load (sagas per second)",
    );
    out.push_str("</svg>\n");
    out
}

fn colour_of(kinds: &[&str], kind: &str) -> &'static str {
    let index = kinds.iter().position(|k| *k == kind).unwrap_or(0);
    PALETTE[index % PALETTE.len()]
}

/// A panel's frame, grid and tick labels; `(bottom, top)` are its pixel rows.
fn axes(
    out: &mut String,
    x: &Scale,
    x_ticks: &[f64],
    y: &Scale,
    y_ticks: &[f64],
    (bottom, top): (f64, f64),
    label: &str,
) {
    for tick in y_ticks {
        let py = y.at(*tick);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{RIGHT}" y1="{py:.1}" y2="{py:.1}" stroke="#e4e4e4"/>"##
        );
        text(out, LEFT - 8.0, py + 4.0, "end", "", &number(*tick));
    }
    for tick in x_ticks {
        let px = x.at(*tick);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}" stroke="#f0f0f0"/>"##
        );
        text(out, px, bottom + 18.0, "middle", "", &number(*tick));
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
        RIGHT - LEFT,
        bottom - top
    );
    let middle = (top + bottom) / 2.0;
    let _ = writeln!(
        out,
        r#"<text x="24" y="{middle:.1}" text-anchor="middle" transform="rotate(-90 24 {middle:.1})">{}</text>"#,
        escape(label)
    );
}

fn target(out: &mut String, x: &Scale, py: f64, label: &str) {
    let (from, to) = (x.at(x.lo), x.at(x.hi));
    let _ = writeln!(
        out,
        r##"<line x1="{from:.1}" x2="{to:.1}" y1="{py:.1}" y2="{py:.1}" stroke="#c00" stroke-dasharray="6 4"/>"##
    );
    text(out, to - 4.0, py - 5.0, "end", "fill=\"#c00\"", label);
}

fn legend(out: &mut String, py: f64, colour: &str, label: &str) {
    let _ = writeln!(
        out,
        r#"<rect x="{}" y="{:.1}" width="14" height="10" fill="{colour}"/>"#,
        RIGHT + 20.0,
        py - 9.0
    );
    text(out, RIGHT + 40.0, py, "start", "", label);
}

fn text(out: &mut String, px: f64, py: f64, anchor: &str, attributes: &str, content: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{px:.1}" y="{py:.1}" text-anchor="{anchor}" {attributes}>{}</text>"#,
        escape(content)
    );
}

/// A tick label: no needless decimals (`0.5`, `2`, `1000`).
fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_scale_maps_its_domain_onto_its_range_even_upside_down() {
        let y = Scale::linear((0.0, 10.0), (600.0, 400.0));
        assert_eq!((y.at(0.0), y.at(5.0), y.at(10.0)), (600.0, 500.0, 400.0));
    }

    #[test]
    fn a_log_scale_puts_each_power_of_ten_equally_far_apart() {
        let y = Scale::log((1.0, 1000.0), (300.0, 0.0));
        assert_eq!(y.at(1.0), 300.0);
        assert!((y.at(10.0) - 200.0).abs() < 1e-9);
        assert!((y.at(100.0) - 100.0).abs() < 1e-9);
        assert!((y.at(1000.0) - 0.0).abs() < 1e-9);
    }

    #[test]
    fn a_scale_of_one_value_puts_it_in_the_middle() {
        assert_eq!(Scale::linear((5.0, 5.0), (0.0, 100.0)).at(5.0), 50.0);
    }

    #[test]
    fn ticks_are_round_steps_from_zero_past_the_maximum() {
        assert_eq!(ticks(4.3), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(ticks(525.0), vec![0.0, 200.0, 400.0, 600.0]);
        assert_eq!(ticks(500.0), vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        assert_eq!(ticks(0.0), vec![0.0, 1.0]);
    }

    #[test]
    fn decades_enclose_the_values_shown() {
        assert_eq!(decades(12.0, 482.0), vec![10.0, 100.0, 1000.0]);
        assert_eq!(decades(100.0, 100.0), vec![100.0, 1000.0]);
        assert_eq!(decades(0.5, 9.0), vec![0.1, 1.0, 10.0]);
    }

    #[test]
    fn the_chart_draws_every_point_and_escapes_its_text() {
        let point = |offered, p99| ChartPoint {
            offered,
            latency: Some([10.0, 20.0, p99]),
            cpu: vec![("order".into(), 1.0), ("kafka".into(), 2.0)],
        };
        let chart = Chart {
            title: "bench <main> & co".into(),
            subtitle: String::new(),
            points: vec![point(100.0, 40.0), point(200.0, 480.0)],
            latency_target_ms: 100.0,
            cpu_target_ms: 4.0,
        };
        let svg = svg(&chart);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("bench &lt;main&gt; &amp; co"));
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(svg.contains("200 kafka: 2.00 ms"));
    }
}
