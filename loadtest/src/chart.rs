//! The benchmark's chart, drawn with plotters as a standalone SVG: end-to-end latency
//! percentiles (top, on a logarithmic axis, since a saturated point is ten times slower than a
//! healthy one) and the CPU time per saga of each process, stacked (bottom), both against the
//! offered rate, with the targets as dashed lines. SVG needs no fonts shipped, and any browser
//! shows it (GitHub too, in the README).

use plotters::{
    coord::{Shift, ranged1d::ValueFormatter, types::RangedCoordf64},
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

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
/// Room on the right of each panel for its legend.
const LEGEND: u32 = 150;
const PERCENTILES: [(&str, RGBColor); 3] = [
    ("p50", PALETTE[0]),
    ("p90", PALETTE[1]),
    ("p99", PALETTE[3]),
];
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x9c, 0x75, 0x5f),
];
const TARGET: RGBColor = RGBColor(0xcc, 0, 0);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The chart as an SVG document.
pub fn svg(chart: &Chart) -> anyhow::Result<String> {
    let mut points = chart.points.clone();
    points.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    let x_max = (points.iter().map(|p| p.offered).fold(0.0, f64::max) * 1.05).max(1.0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let font = ("sans-serif", 22).into_font();
        root.draw(&Text::new(
            chart.title.as_str(),
            (20, 12),
            font.style(FontStyle::Bold),
        ))?;
        let grey = font.resize(16.0).color(&RGBColor(0x55, 0x55, 0x55));
        root.draw(&Text::new(chart.subtitle.as_str(), (20, 40), grey))?;
        let (latency, cpu) = root.split_vertically(60).1.split_vertically(300);
        draw_latency(&latency, &points, x_max, chart.latency_target_ms)?;
        draw_cpu(&cpu, &points, x_max, chart.cpu_target_ms)?;
        root.present()?;
    }
    Ok(out)
}

fn draw_latency(area: &Area, points: &[ChartPoint], x_max: f64, target: f64) -> anyhow::Result<()> {
    // From a power of ten below the fastest p50 to one above the slowest p99 (and the target).
    let values = || {
        points
            .iter()
            .filter_map(|p| p.latency)
            .flatten()
            .chain([target])
    };
    let lowest = values().fold(f64::INFINITY, f64::min).max(0.1);
    let highest = values().fold(0.0, f64::max);
    let low = 10f64.powf(lowest.log10().floor());
    let high = 10f64.powf(highest.log10().ceil()).max(low * 10.0);
    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_top(10)
        .margin_right(LEGEND)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (low..high).log_scale())?;
    draw_mesh(&mut chart, "end-to-end latency (ms)", "")?;
    draw_target(&mut chart, x_max, target, format!("p99 target {target} ms"))?;
    for (i, (_, colour)) in PERCENTILES.into_iter().enumerate() {
        // A latency below the axis (0 ms: one clock tick) sits on it.
        let line = points
            .iter()
            .filter_map(|p| Some((p.offered, p.latency?[i].max(low))));
        chart.draw_series(LineSeries::new(line, colour.filled().stroke_width(2)).point_size(4))?;
    }
    draw_legend(area, &PERCENTILES)
}

fn draw_cpu(area: &Area, points: &[ChartPoint], x_max: f64, target: f64) -> anyhow::Result<()> {
    let mut kinds: Vec<&str> = Vec::new();
    for (kind, _) in points.iter().flat_map(|p| &p.cpu) {
        if !kinds.contains(&kind.as_str()) {
            kinds.push(kind);
        }
    }
    let tallest = points
        .iter()
        .map(|p| p.cpu.iter().map(|(_, ms)| ms).sum::<f64>())
        .fold(target, f64::max);
    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_top(20)
        .margin_right(LEGEND)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..tallest * 1.05)?;
    draw_mesh(
        &mut chart,
        "CPU per saga (ms)",
        "offered load (sagas per second)",
    )?;
    // Bars 60% as wide as the narrowest gap between two rates, and no wider than 4% of the axis.
    let gap = points
        .windows(2)
        .map(|w| w[1].offered - w[0].offered)
        .fold(x_max / 15.0, f64::min);
    let half = gap * 0.3;
    // Each process's segment of each bar: (kind, rate, bottom, top), stacked in the order the
    // point lists them.
    let segments: Vec<(&str, f64, f64, f64)> = points
        .iter()
        .flat_map(|p| {
            p.cpu.iter().scan(0.0, |base, (kind, ms)| {
                *base += ms;
                Some((kind.as_str(), p.offered, *base - ms, *base))
            })
        })
        .collect();
    let legend: Vec<(&str, RGBColor)> =
        kinds.into_iter().zip(PALETTE.into_iter().cycle()).collect();
    for (kind, colour) in legend.iter().copied() {
        let bars =
            segments
                .iter()
                .filter(|segment| segment.0 == kind)
                .map(|(_, x, bottom, top)| {
                    Rectangle::new([(x - half, *bottom), (x + half, *top)], colour.filled())
                });
        chart.draw_series(bars)?;
    }
    draw_target(&mut chart, x_max, target, format!("target {target} ms"))?;
    draw_legend(area, &legend)
}

type Panel<'a, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;

/// A target: a dashed red line across the panel, labelled at its right end.
fn draw_target<Y: Ranged<ValueType = f64>>(
    chart: &mut Panel<'_, Y>,
    x_max: f64,
    at: f64,
    label: String,
) -> anyhow::Result<()> {
    let line = DashedLineSeries::new([(0.0, at), (x_max, at)], 6, 4, TARGET.into());
    chart.draw_series(line)?;
    let font = ("sans-serif", 15).into_font().color(&TARGET);
    let anchor = Pos::new(HPos::Right, VPos::Bottom);
    chart.draw_series([Text::new(label, (x_max, at), font.pos(anchor))])?;
    Ok(())
}

/// The series' names and colours on the right of a panel.
fn draw_legend(area: &Area, series: &[(&str, RGBColor)]) -> anyhow::Result<()> {
    let x = (WIDTH - LEGEND + 20) as i32;
    for (i, (name, colour)) in series.iter().enumerate() {
        let y = 10 + 20 * i as i32;
        area.draw(&Rectangle::new([(x, y), (x + 14, y + 10)], colour.filled()))?;
        area.draw(&Text::new(*name, (x + 20, y - 2), ("sans-serif", 15)))?;
    }
    Ok(())
}

/// A panel's axes: round labels (`20`, `0.5`, `1000`), its major grid only.
fn draw_mesh<Y>(
    chart: &mut Panel<'_, Y>,
    y_description: &str,
    x_description: &str,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 15))
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y}"))
        .y_desc(y_description)
        .x_desc(x_description)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(offered: f64, p99: f64) -> ChartPoint {
        ChartPoint {
            offered,
            latency: Some([10.0, 20.0, p99]),
            cpu: vec![
                ("order".into(), 1.0),
                ("gateway".into(), 0.5),
                ("kafka".into(), 2.0),
            ],
        }
    }

    fn chart(points: Vec<ChartPoint>) -> Chart {
        Chart {
            title: "bench <main> & co".into(),
            subtitle: "commit abc, release build".into(),
            points,
            latency_target_ms: 100.0,
            cpu_target_ms: 4.0,
        }
    }

    /// The text of every `<text>` element, trimmed.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|element| element.split_once('>')?.1.split_once("</text>"))
            .map(|(text, _)| text.trim())
            .collect()
    }

    #[test]
    fn the_chart_is_a_standalone_svg_with_its_titles_axes_targets_and_legends() {
        let svg = svg(&chart(vec![point(200.0, 480.0), point(100.0, 40.0)])).unwrap();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
        assert!(svg.contains(&format!(r#"viewBox="0 0 {WIDTH} {HEIGHT}""#)));
        let texts = texts(&svg);
        for expected in [
            "bench &lt;main&gt; &amp; co",
            "commit abc, release build",
            "end-to-end latency (ms)",
            "CPU per saga (ms)",
            "offered load (sagas per second)",
            "p99 target 100 ms",
            "target 4 ms",
            "p50",
            "p90",
            "p99",
            "order",
            "gateway",
            "kafka",
        ] {
            assert!(texts.contains(&expected), "{expected:?} not in {texts:?}");
        }
        assert!(
            svg.matches(r##"stroke="#CC0000""##).count() > 10,
            "two dashed targets"
        );
        // The latency axis runs over whole decades, around every value and the target.
        for decade in ["10", "100", "1000"] {
            assert!(texts.contains(&decade), "{decade:?} not in {texts:?}");
        }
    }

    #[test]
    fn every_percentile_of_every_rate_is_a_dot_and_every_process_a_segment_of_its_bar() {
        let svg = svg(&chart(vec![point(100.0, 40.0), point(200.0, 480.0)])).unwrap();
        assert_eq!(svg.matches("<circle").count(), 3 * 2);
        for colour in ["#4E79A7", "#F28E2B", "#E15759"] {
            let line = format!(r#"<polyline fill="none" opacity="1" stroke="{colour}""#);
            assert_eq!(svg.matches(&line).count(), 1, "one line for {colour}");
        }
        // Kafka, the third process, has the palette's third colour, which no percentile uses:
        // a segment per rate and its square in the legend.
        assert_eq!(svg.matches(r##"fill="#59A14F""##).count(), 2 + 1);
    }

    #[test]
    fn a_chart_without_a_completed_saga_still_draws_its_axes_and_targets() {
        let mut empty = point(100.0, 40.0);
        empty.latency = None;
        for points in [vec![], vec![empty]] {
            let svg = svg(&chart(points)).unwrap();
            assert_eq!(svg.matches("<circle").count(), 0);
            let texts = texts(&svg);
            assert!(texts.contains(&"p99 target 100 ms") && texts.contains(&"target 4 ms"));
        }
    }
}
