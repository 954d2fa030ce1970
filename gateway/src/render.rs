//! The saga view for people: an HTML timeline (one lane per service, events where and when
//! they happened, arrows to the services that consumed them, the deadline as a red line) and
//! the same as plain text for a terminal. No scripts: the page is drawn as inline SVG.
//!
//! The pages are askama templates (`templates/`), compiled with the gateway and escaping every
//! value they show: the texts come from the services (a holder's id, a reason to ignore an
//! event) and must never become markup. This module computes what the templates place: where
//! each lane, tick, event and consumer goes.
//!
//! Time runs on a logarithmic axis from the order's creation, so a saga that finishes in
//! 100 ms and a deadline 5 s later are both readable on one page.

use std::fmt::Write as _;

use askama::Template;
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
#[derive(Template)]
#[template(path = "saga.html")]
struct SagaPage<'a> {
    order_id: i64,
    status: &'a str,
    /// The badge's class: its colour.
    badge: &'static str,
    holder: &'a str,
    amount: &'a str,
    created: &'a str,
    deadline: String,
    deadline_state: String,
    compensation: &'a str,
    exchange: String,
    points: String,
    unavailable: &'a [String],
    timeline: Timeline<'a>,
    rows: Vec<Row<'a>>,
}

/// The SVG drawing's geometry, in pixels.
struct Timeline<'a> {
    width: f64,
    height: f64,
    /// Where the lanes begin and end, and the first lane's row.
    left: f64,
    right: f64,
    top: f64,
    lanes: Vec<Lane>,
    ticks: Vec<Tick>,
    /// The deadline's column.
    deadline: Option<f64>,
    events: Vec<Mark<'a>>,
}

struct Lane {
    service: &'static str,
    y: f64,
}

struct Tick {
    x: f64,
    label: String,
}

/// An event: a circle in its emitter's lane, with arrows to its consumers.
struct Mark<'a> {
    x: f64,
    y: f64,
    fill: &'static str,
    event_type: &'a str,
    at: String,
    /// Labels alternate above and below the lane, so neighbours do not overlap.
    label_y: f64,
    anchor: &'static str,
    consumers: Vec<ConsumerMark<'a>>,
}

/// A consumer: a square in its lane, hollow red when it ignored the event.
struct ConsumerMark<'a> {
    x: f64,
    y: f64,
    fill: &'static str,
    stroke: &'static str,
    service: &'a str,
    /// The outcome and its detail, for the tooltip.
    outcome: String,
    ignored: Option<IgnoredLabel<'a>>,
}

struct IgnoredLabel<'a> {
    x: f64,
    anchor: &'static str,
    text: &'a str,
}

/// A row of the table of events.
struct Row<'a> {
    late: bool,
    at: String,
    event_type: &'a str,
    from: &'a str,
    fields: String,
    consumers: String,
}

impl<'a> Timeline<'a> {
    fn of(view: &'a SagaView) -> Timeline<'a> {
        let axis = Axis::for_view(view);
        Timeline {
            width: WIDTH,
            height: TOP + LANE * SERVICES.len() as f64,
            left: LEFT,
            right: WIDTH - RIGHT,
            top: TOP,
            lanes: SERVICES
                .map(|service| Lane {
                    service,
                    y: lane_y(service),
                })
                .into(),
            ticks: [1.0, 10.0, 100.0, 1000.0, 10_000.0, 60_000.0]
                .into_iter()
                .take_while(|tick| *tick <= axis.max_ms)
                .map(|tick| Tick {
                    x: axis.x(tick),
                    label: ms_label(tick),
                })
                .collect(),
            deadline: view.deadline.map(|deadline| axis.x(offset(view, deadline))),
            events: view
                .events
                .iter()
                .enumerate()
                .map(|(i, event)| Mark::of(view, &axis, event, i % 2 == 0))
                .collect(),
        }
    }
}

impl<'a> Mark<'a> {
    fn of(view: &SagaView, axis: &Axis, event: &'a EventView, above: bool) -> Mark<'a> {
        let x = axis.x(offset(view, event.at));
        let y = event.emitted_by.as_deref().map_or(TOP - 25.0, lane_y);
        let consumers = event
            .consumed_by
            .iter()
            .map(|consumer| {
                let x = axis.x(offset(view, consumer.at));
                let ignored = consumer.outcome == "IGNORED";
                let colour = if ignored { "#d93025" } else { "#1a73e8" };
                ConsumerMark {
                    x,
                    y: lane_y(&consumer.service),
                    fill: if ignored { "white" } else { colour },
                    stroke: colour,
                    service: &consumer.service,
                    outcome: format!(
                        "{} {}",
                        consumer.outcome,
                        consumer.detail.as_deref().unwrap_or("")
                    ),
                    ignored: ignored.then(|| IgnoredLabel {
                        x: if near_right(x) { x - 8.0 } else { x + 8.0 },
                        anchor: if near_right(x) { "end" } else { "start" },
                        text: consumer.detail.as_deref().unwrap_or(""),
                    }),
                }
            })
            .collect();
        Mark {
            x,
            y,
            fill: if event.after_deadline {
                "#d93025"
            } else {
                "#188038"
            },
            event_type: &event.event_type,
            at: ms_label(offset(view, event.at)),
            label_y: if above { y - 12.0 } else { y + 22.0 },
            anchor: if near_right(x) { "end" } else { "middle" },
            consumers,
        }
    }
}

pub fn html(view: &SagaView) -> askama::Result<String> {
    let status = status(view);
    let order = |field: &str| view.order[field].as_str();
    SagaPage {
        order_id: view.order_id,
        status,
        badge: if status.starts_with("REJECTED") {
            "rejected"
        } else if status == "APPROVED" {
            "approved"
        } else {
            ""
        },
        holder: order("holderId").unwrap_or(""),
        amount: order("amount").unwrap_or(""),
        created: order("createdAt").unwrap_or(""),
        deadline: view.deadline.map(|d| d.to_rfc3339()).unwrap_or_default(),
        deadline_state: deadline_text(view),
        compensation: order("compensation").unwrap_or("none"),
        exchange: state_text(&view.exchange, "none"),
        points: state_text(&view.points, "none"),
        unavailable: &view.unavailable,
        timeline: Timeline::of(view),
        rows: view
            .events
            .iter()
            .map(|event| Row {
                late: event.after_deadline,
                at: ms_label(offset(view, event.at)),
                event_type: &event.event_type,
                from: event.emitted_by.as_deref().unwrap_or("?"),
                fields: fields_text(&event.fields),
                consumers: consumers_text(event, None),
            })
            .collect(),
    }
    .render()
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
#[derive(Template)]
#[template(path = "sagas.html")]
struct IndexPage<'a> {
    orders: Vec<IndexRow<'a>>,
}

struct IndexRow<'a> {
    id: i64,
    status: &'a str,
    holder: &'a str,
    amount: &'a str,
    created: &'a str,
}

pub fn index(orders: &[Value]) -> askama::Result<String> {
    let orders = orders
        .iter()
        .map(|order| {
            let field = |name: &str| order[name].as_str().unwrap_or("");
            IndexRow {
                id: order["id"].as_i64().unwrap_or_default(),
                status: field("status"),
                holder: field("holderId"),
                amount: field("amount"),
                created: field("createdAt"),
            }
        })
        .collect();
    IndexPage { orders }.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::merge;
    use serde_json::json;

    /// A saga rejected at its deadline, whose texts (holder, reason, fields) hold markup.
    fn hostile_saga() -> SagaView {
        let histories = [
            (
                "order",
                json!({
                    "emitted": [{ "eventId": "a", "eventType": "OrderCreated", "createdAt": "2026-01-01T00:00:00.000Z",
                                  "event": { "eventType": "OrderCreated", "orderId": 7, "holderId": "<script>alert(1)</script>" } }],
                    "consumed": [{ "eventId": "b", "eventType": "DeadlineReached", "outcome": "APPLIED",
                                   "duplicates": 1, "handledAt": "2026-01-01T00:00:05.020Z" }]
                }),
            ),
            (
                "exchange",
                json!({
                    "consumed": [{ "eventId": "a", "eventType": "OrderCreated", "outcome": "IGNORED",
                                   "detail": "<script>steal()</script> & \"more\"", "duplicates": 0,
                                   "handledAt": "2026-01-01T00:00:05.500Z" }]
                }),
            ),
            (
                "deadline",
                json!({
                    "emitted": [{ "eventId": "b", "eventType": "DeadlineReached", "createdAt": "2026-01-01T00:00:05.001Z",
                                  "event": { "eventType": "DeadlineReached", "orderId": 7 } }]
                }),
            ),
        ];
        let deadline = DateTime::parse_from_rfc3339("2026-01-01T00:00:05.000Z")
            .unwrap()
            .with_timezone(&Utc);
        SagaView {
            order_id: 7,
            order: json!({
                "id": 7, "status": "REJECTED DUE TO DEADLINE", "holderId": "<script>alert(1)</script>",
                "amount": "500", "createdAt": "2026-01-01T00:00:00Z", "compensation": "<b>done</b>",
            }),
            deadline: Some(deadline),
            deadline_status: Some(
                json!({ "status": "FIRED", "firedAt": "2026-01-01T00:00:05.001Z" }),
            ),
            exchange: Some(json!({ "status": "COMPENSATED" })),
            points: None,
            events: merge(&histories, Some(deadline)),
            unavailable: vec!["<point>".into()],
        }
    }

    #[test]
    fn markup_in_the_services_texts_is_shown_escaped_never_run() {
        let page = html(&hostile_saga()).unwrap();
        for raw in ["<script", "<b>done", "<point>", "& \"more"] {
            assert!(!page.contains(raw), "{raw:?} left as markup in:\n{page}");
        }
        // Still shown, as text: the holder, the reason the exchange ignored the event (in the
        // drawing and in the table), the compensation and the service not answering.
        assert_eq!(page.matches("alert(1)").count(), 2, "holder and its field");
        assert_eq!(page.matches("steal()").count(), 3, "tooltip, label, table");
        assert!(page.contains("&#60;script&#62;steal()&#60;/script&#62; &#38; &#34;more&#34;"));
        assert!(page.contains("&#60;b&#62;done&#60;/b&#62;"));
        assert!(page.contains("missing from this view: &#60;point&#62;"));
    }

    #[test]
    fn the_page_has_the_elements_the_browser_test_looks_for() {
        let page = html(&hostile_saga()).unwrap();
        assert!(page.contains("Saga of order 7"));
        assert!(page.contains(r#"<span class="badge rejected">REJECTED DUE TO DEADLINE</span>"#));
        assert!(page.contains(r#"<line id="deadline""#));
        assert!(page.contains("deadline · FIRED at 2026-01-01T00:00:05.001Z"));
        assert_eq!(
            page.matches(r#"class="event""#).count(),
            2,
            "one circle per event"
        );
        assert_eq!(page.matches(r#"class="ignored""#).count(), 1);
        assert_eq!(page.matches(r#"<tr class="event-row">"#).count(), 1);
        assert_eq!(page.matches(r#"<tr class="event-row late">"#).count(), 1);
        assert!(page.contains("<td>order applied, 1 duplicate(s) skipped</td>"));
    }

    #[test]
    fn the_index_links_to_each_saga_and_escapes_its_texts() {
        let orders = [
            json!({ "id": 7, "status": "APPROVED", "holderId": "<i>a&b</i>",
                              "amount": "1", "createdAt": "2026-01-01T00:00:00Z" }),
        ];
        let page = index(&orders).unwrap();
        assert!(page.contains(r#"<a href="/sagas/7">order 7</a>"#));
        assert!(page.contains("&#60;i&#62;a&#38;b&#60;/i&#62;"));
        assert!(!page.contains("<i>"));
    }
}
