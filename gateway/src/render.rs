//! The saga view for people: an HTML timeline (one lane per service, events where and when
//! they happened, arrows to the services that consumed them, the deadline as a red line) and
//! the same as plain text for a terminal. No scripts: the page is drawn here, as inline SVG.
//!
//! Time runs on a logarithmic axis from the order's creation, so a saga that finishes in
//! 100 ms and a deadline 5 s later are both readable on one page.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::saga::{EventView, SERVICES, SagaView};

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 70.0;
const LANE: f64 = 90.0;

/// Milliseconds since the saga began.
fn offset(view: &SagaView, at: DateTime<Utc>) -> f64 {
    (at - start(view)).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

fn start(view: &SagaView) -> DateTime<Utc> {
    view.order["createdAt"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| view.events.first().map(|e| e.at))
        .unwrap_or_else(Utc::now)
}

struct Axis {
    max_ms: f64,
}

impl Axis {
    fn for_view(view: &SagaView) -> Axis {
        let last = view
            .events
            .iter()
            .flat_map(|e| std::iter::once(e.at).chain(e.consumed_by.iter().map(|c| c.at)))
            .chain(view.deadline)
            .map(|at| offset(view, at))
            .fold(1.0, f64::max);
        Axis {
            max_ms: last * 1.15,
        }
    }

    fn x(&self, ms: f64) -> f64 {
        let fraction = (1.0 + ms.max(0.0)).ln() / (1.0 + self.max_ms).ln();
        LEFT + fraction * (WIDTH - LEFT - RIGHT)
    }
}

/// Labels this close to the right edge are anchored at their end, so they stay on the page.
fn near_right(x: f64) -> bool {
    x > WIDTH - RIGHT - 140.0
}

fn lane_y(service: &str) -> f64 {
    let index = SERVICES.iter().position(|s| *s == service).unwrap_or(0);
    TOP + index as f64 * LANE
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn status(view: &SagaView) -> &str {
    view.order["status"].as_str().unwrap_or("UNKNOWN")
}

fn fields_text(fields: &Value) -> String {
    fields
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Who consumed the event and what they did, with times since `start` when given.
fn consumers_text(event: &EventView, start: Option<DateTime<Utc>>) -> String {
    if event.consumed_by.is_empty() {
        return "not consumed".into();
    }
    event
        .consumed_by
        .iter()
        .map(|c| {
            let mut text = match (&c.outcome[..], &c.detail) {
                ("IGNORED", Some(detail)) => format!("{} ignored ({detail})", c.service),
                ("IGNORED", None) => format!("{} ignored", c.service),
                _ => format!("{} applied", c.service),
            };
            if let Some(start) = start {
                let _ = write!(
                    text,
                    " at +{}",
                    ms_label((c.at - start).num_microseconds().unwrap_or(0) as f64 / 1000.0)
                );
            }
            if c.duplicates > 0 {
                let _ = write!(text, ", {} duplicate(s) skipped", c.duplicates);
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn deadline_text(view: &SagaView) -> String {
    let Some(record) = &view.deadline_status else {
        return "not scheduled".into();
    };
    let status = record["status"].as_str().unwrap_or("?");
    let at = record["firedAt"]
        .as_str()
        .or(record["cancelledAt"].as_str());
    match at {
        Some(at) => format!("{status} at {at}"),
        None => status.to_string(),
    }
}

fn state_text(record: &Option<Value>, fallback: &str) -> String {
    match record {
        Some(record) => format!(
            "{} {}",
            record["status"].as_str().unwrap_or("?"),
            record["point"].as_str().unwrap_or("")
        )
        .trim()
        .to_string(),
        None => fallback.into(),
    }
}

/// The saga as a page: summary, timeline, and a table of every event.
pub fn html(view: &SagaView) -> String {
    let axis = Axis::for_view(view);
    let height = TOP + LANE * SERVICES.len() as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" aria-label="saga timeline">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8a94a6"/></marker></defs>"##
    );
    for service in SERVICES {
        let y = lane_y(service);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#d5dae3"/><text x="10" y="{}" class="lane">{service}</text>"##,
            WIDTH - RIGHT,
            y + 4.0
        );
    }
    for tick in [1.0, 10.0, 100.0, 1000.0, 10_000.0, 60_000.0] {
        if tick > axis.max_ms {
            break;
        }
        let x = axis.x(tick);
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#eef0f4"/><text x="{x}" y="{}" class="tick">{}</text>"##,
            TOP - 40.0,
            height - 30.0,
            height - 12.0,
            ms_label(tick)
        );
    }
    if let Some(deadline) = view.deadline {
        let x = axis.x(offset(view, deadline));
        let _ = write!(
            svg,
            r##"<line id="deadline" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#d93025" stroke-width="2" stroke-dasharray="6 4"/><text x="{}" y="{}" class="deadline" text-anchor="end">deadline · {}</text>"##,
            TOP - 45.0,
            height - 30.0,
            x - 4.0,
            TOP - 48.0,
            escape(&deadline_text(view))
        );
    }
    for (i, event) in view.events.iter().enumerate() {
        let x = axis.x(offset(view, event.at));
        let y = event.emitted_by.as_deref().map_or(TOP - 25.0, lane_y);
        for consumer in &event.consumed_by {
            let cx = axis.x(offset(view, consumer.at));
            let cy = lane_y(&consumer.service);
            let ignored = consumer.outcome == "IGNORED";
            let color = if ignored { "#d93025" } else { "#1a73e8" };
            let _ = write!(
                svg,
                r##"<line x1="{x}" y1="{y}" x2="{cx}" y2="{cy}" stroke="#8a94a6" stroke-width="1" marker-end="url(#arrow)"/><rect x="{}" y="{}" width="9" height="9" fill="{}" stroke="{color}" stroke-width="2"><title>{} {}</title></rect>"##,
                cx - 4.5,
                cy - 4.5,
                if ignored { "white" } else { color },
                escape(&consumer.service),
                escape(&format!(
                    "{} {}",
                    consumer.outcome,
                    consumer.detail.as_deref().unwrap_or("")
                )),
            );
            if ignored {
                let _ = write!(
                    svg,
                    r##"<text x="{}" y="{}" class="ignored" text-anchor="{}">ignored: {}</text>"##,
                    if near_right(cx) { cx - 8.0 } else { cx + 8.0 },
                    cy - 8.0,
                    if near_right(cx) { "end" } else { "start" },
                    escape(consumer.detail.as_deref().unwrap_or(""))
                );
            }
        }
        let above = i % 2 == 0;
        let _ = write!(
            svg,
            r##"<circle class="event" cx="{x}" cy="{y}" r="6" fill="{}"><title>{} at +{}</title></circle><text x="{x}" y="{}" class="label" text-anchor="{}">{}</text>"##,
            if event.after_deadline {
                "#d93025"
            } else {
                "#188038"
            },
            escape(&event.event_type),
            ms_label(offset(view, event.at)),
            if above { y - 12.0 } else { y + 22.0 },
            if near_right(x) { "end" } else { "middle" },
            escape(&event.event_type),
        );
    }
    svg.push_str("</svg>");

    let mut rows = String::new();
    for event in &view.events {
        let _ = write!(
            rows,
            "<tr class=\"event-row{}\"><td>+{}</td><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if event.after_deadline { " late" } else { "" },
            ms_label(offset(view, event.at)),
            escape(&event.event_type),
            escape(event.emitted_by.as_deref().unwrap_or("?")),
            escape(&fields_text(&event.fields)),
            escape(&consumers_text(event, None)),
        );
    }
    let unavailable = if view.unavailable.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"warn\">Not answering, so missing from this view: {}</p>",
            escape(&view.unavailable.join(", "))
        )
    };
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>saga {id} · {status}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #202124; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} .muted {{ color: #5f6368; }}
.badge {{ display: inline-block; padding: 2px 8px; border-radius: 10px; background: #e8f0fe; }}
.badge.rejected {{ background: #fce8e6; }} .badge.approved {{ background: #e6f4ea; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }} dt {{ color: #5f6368; }}
svg text {{ font: 12px system-ui, sans-serif; }} .lane {{ font-weight: 600; }} .tick {{ fill: #80868b; }}
.deadline {{ fill: #d93025; font-weight: 600; }} .ignored {{ fill: #d93025; font-size: 11px; }}
table {{ border-collapse: collapse; margin-top: 16px; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #eee; text-align: left; }}
tr.late td:first-child {{ color: #d93025; }} .warn {{ color: #d93025; }}
</style></head>
<body>
<p><a href="/sagas">all sagas</a></p>
<h1>Saga of order {id} <span class="badge {class}">{status}</span></h1>
<p class="muted">{holder} · amount {amount} · created {created}</p>
<dl>
<dt>deadline</dt><dd>{deadline} ({deadline_state})</dd>
<dt>compensation</dt><dd>{compensation}</dd>
<dt>exchange</dt><dd>{exchange}</dd>
<dt>points</dt><dd>{points}</dd>
</dl>
{unavailable}
{svg}
<p class="muted">Time since the order was created, on a logarithmic axis. Circles: events, in the lane of the service that emitted them (red: after the deadline). Squares: the services that consumed them (hollow red: ignored).</p>
<table><thead><tr><th>time</th><th>event</th><th>from</th><th>fields</th><th>consumed by</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>"##,
        id = view.order_id,
        status = escape(status(view)),
        class = if status(view).starts_with("REJECTED") {
            "rejected"
        } else if status(view) == "APPROVED" {
            "approved"
        } else {
            ""
        },
        holder = escape(view.order["holderId"].as_str().unwrap_or("")),
        amount = escape(view.order["amount"].as_str().unwrap_or("")),
        created = escape(view.order["createdAt"].as_str().unwrap_or("")),
        deadline = view.deadline.map(|d| d.to_rfc3339()).unwrap_or_default(),
        deadline_state = escape(&deadline_text(view)),
        compensation = escape(view.order["compensation"].as_str().unwrap_or("none")),
        exchange = escape(&state_text(&view.exchange, "none")),
        points = escape(&state_text(&view.points, "none")),
    )
}

/// The saga for a terminal.
pub fn text(view: &SagaView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "saga of order {}: {}  (holder {}, amount {})",
        view.order_id,
        status(view),
        view.order["holderId"].as_str().unwrap_or("?"),
        view.order["amount"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "deadline {} ({}), compensation {}, exchange {}, points {}",
        view.deadline.map(|d| d.to_rfc3339()).unwrap_or_default(),
        deadline_text(view),
        view.order["compensation"].as_str().unwrap_or("none"),
        state_text(&view.exchange, "none"),
        state_text(&view.points, "none"),
    );
    if !view.unavailable.is_empty() {
        let _ = writeln!(out, "not answering: {}", view.unavailable.join(", "));
    }
    let _ = writeln!(out);
    let deadline_ms = view.deadline.map(|d| offset(view, d));
    let mut deadline_shown = false;
    for event in &view.events {
        let ms = offset(view, event.at);
        if let Some(deadline_ms) = deadline_ms
            && !deadline_shown
            && ms >= deadline_ms
        {
            let _ = writeln!(
                out,
                "{:>10}  ---------- deadline ----------",
                format!("+{}", ms_label(deadline_ms))
            );
            deadline_shown = true;
        }
        let line = format!(
            "{:>10}  {:<9} {:<20} {}",
            format!("+{}", ms_label(ms)),
            event.emitted_by.as_deref().unwrap_or("?"),
            event.event_type,
            fields_text(&event.fields)
        );
        let _ = writeln!(out, "{}", line.trim_end());
        let _ = writeln!(
            out,
            "{:>10}  {:<9} -> {}",
            "",
            "",
            consumers_text(event, Some(start(view)))
        );
    }
    if let Some(deadline_ms) = deadline_ms
        && !deadline_shown
    {
        let _ = writeln!(
            out,
            "{:>10}  ---------- deadline ----------",
            format!("+{}", ms_label(deadline_ms))
        );
    }
    out
}

/// The index of recent sagas, linking to each timeline.
pub fn index(orders: &[Value]) -> String {
    let mut rows = String::new();
    for order in orders {
        let id = order["id"].as_i64().unwrap_or_default();
        let _ = write!(
            rows,
            "<tr><td><a href=\"/sagas/{id}\">order {id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(order["status"].as_str().unwrap_or("")),
            escape(order["holderId"].as_str().unwrap_or("")),
            escape(order["amount"].as_str().unwrap_or("")),
            escape(order["createdAt"].as_str().unwrap_or("")),
        );
    }
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sagas</title>
<style>body {{ font: 14px system-ui, sans-serif; margin: 24px; }} td, th {{ padding: 4px 12px; text-align: left; border-bottom: 1px solid #eee; }}</style>
</head><body><h1>Recent sagas</h1>
<table><thead><tr><th>saga</th><th>status</th><th>holder</th><th>amount</th><th>created</th></tr></thead>
<tbody>{rows}</tbody></table></body></html>"##
    )
}
