//! The seed's walkthrough (its httpie commands, as the README's "The walkthrough" lists them),
//! defined once: `scripts/demo` runs it against the local stack, `scripts/compose-test`
//! against the Docker one (both through the `walkthrough` binary of `loadtest`), and an
//! end-to-end test against a stack of its own. Each command is written as the seed writes it
//! and sent as httpie sends it: `key=value` items make a JSON object of strings, POSTed; a
//! command without items is a GET.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// How long a saga may take to end: its deadline (5 s) plus the exchange's demo delay (10 s)
/// and the compensation, with room to spare.
const SETTLE: Duration = Duration::from_secs(30);

/// Stops and starts the exchange service, for the downtime scenario.
pub trait Exchange {
    fn stop(&mut self) -> impl Future<Output = anyhow::Result<()>>;
    fn start(&mut self) -> impl Future<Output = anyhow::Result<()>>;
}

/// One outcome the seed promises, and what the run saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The scenario and what it looked at, e.g. "happy path: order 1".
    pub what: String,
    pub actual: String,
    pub expected: String,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.actual == self.expected
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Check {
            what,
            actual,
            expected,
        } = self;
        if self.passed() {
            write!(f, "ok    {what}: {actual}")
        } else {
            write!(f, "FAIL  {what}: {actual} (expected {expected})")
        }
    }
}

/// The order ids of the walkthrough's scenarios, by name: happy, limit, down, before (currencyId
/// 100) and after (currencyId 200).
pub type Orders = BTreeMap<&'static str, i64>;

pub struct Walkthrough {
    http: reqwest::Client,
    /// Where a command for each of the seed's ports goes: 8088 (the gateway) and 8083 (point).
    urls: BTreeMap<u16, String>,
    /// Whether each command and its answer are printed.
    verbose: bool,
    pub checks: Vec<Check>,
    pub orders: Orders,
}

impl Walkthrough {
    /// A walkthrough sending the seed's `:8088` commands to `gateway` and its `:8083` ones to
    /// `point` (base URLs).
    pub fn new(gateway: &str, point: &str, verbose: bool) -> Walkthrough {
        Walkthrough {
            http: reqwest::Client::new(),
            urls: BTreeMap::from([(8088, gateway.into()), (8083, point.into())]),
            verbose,
            checks: Vec::new(),
            orders: Orders::new(),
        }
    }

    /// The seed's holder, `jjy`, or a fresh name when this stack already has a `jjy` (a second
    /// run), so that the balances are the seed's.
    pub async fn holder(&self) -> anyhow::Result<String> {
        let (status, _) = self.send(":8088/points/jjy").await?;
        Ok(if status == 200 {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            format!("jjy-{}", now.as_secs())
        } else {
            "jjy".into()
        })
    }

    /// Walks every scenario of the seed with `holder`, recording what it promises in
    /// [`checks`](Self::checks); an error only if the stack could not be asked.
    pub async fn run(&mut self, holder: &str, exchange: &mut impl Exchange) -> anyhow::Result<()> {
        let points = format!(":8088/points/{holder}");
        self.init(holder, &points).await?;
        self.happy_path(holder, &points).await?;
        self.point_limit(holder, &points).await?;
        self.downtime(holder, &points, exchange).await?;
        self.deadline_handling(holder, &points).await
    }

    async fn init(&mut self, holder: &str, points: &str) -> anyhow::Result<()> {
        self.section("init: open an account with 10000 points");
        self.http(&format!(":8088/points userId=\"{holder}\" point=10000"))
            .await?;
        self.expect_balance("init", points, "10000").await
    }

    async fn happy_path(&mut self, holder: &str, points: &str) -> anyhow::Result<()> {
        self.section("happy path: exchange 500 and pay with points");
        let happy = self
            .order("happy", holder, "currencyId=1 amount=500")
            .await?;
        let status = self.settle(happy).await?;
        let deadline = row_status(&self.http(":8088/deadlines").await?, happy);
        let what = format!("deadline of order {happy}");
        self.check("happy path", &what, deadline, "CANCELLED");
        self.expect_balance("happy path", points, "9500").await?;
        let used = row_status(&self.http(":8083/transactions").await?, happy);
        let what = format!("points of order {happy}");
        self.check("happy path", &what, used, "USED");
        let exchanged = row_status(&self.http(":8088/exchanges").await?, happy);
        let what = format!("exchange of order {happy}");
        self.check("happy path", &what, exchanged, "EXCHANGED");
        self.http(&format!(":8088/orders/{happy}")).await?;
        self.check("happy path", &format!("order {happy}"), status, "APPROVED");
        Ok(())
    }

    async fn point_limit(&mut self, holder: &str, points: &str) -> anyhow::Result<()> {
        self.section("compensation with point limit: 50000 is more than the balance");
        let limit = (self.order("limit", holder, "currencyId=1 amount=50000")).await?;
        let status = self.settle(limit).await?;
        self.http(&format!(":8088/orders/{limit}")).await?;
        let (what, expected) = (format!("order {limit}"), "REJECTED DUE TO POINT LIMIT");
        self.check("point limit", &what, status, expected);
        self.expect_balance("point limit", points, "9500").await
    }

    async fn downtime(
        &mut self,
        holder: &str,
        points: &str,
        exchange: &mut impl Exchange,
    ) -> anyhow::Result<()> {
        self.section("compensation with downtime: the exchange is down while an order waits");
        exchange.stop().await.context("stopping the exchange")?;
        let down = self.order("down", holder, "amount=500").await?;
        self.say("(waiting for its deadline to pass)");
        self.wait_for(down, |order| order["status"] != "PENDING")
            .await?;
        exchange.start().await.context("starting the exchange")?;
        let status = self.settle(down).await?;
        self.http(&format!(":8088/orders/{down}")).await?;
        let (what, expected) = (format!("order {down}"), "REJECTED DUE TO DEADLINE");
        self.check("downtime", &what, status, expected);
        self.expect_balance("downtime", points, "9500").await
    }

    /// The exchange's demo hooks (`FAULT_HOOKS=on`): `currencyId=100` waits before its expiry
    /// check, `200` after it.
    async fn deadline_handling(&mut self, holder: &str, points: &str) -> anyhow::Result<()> {
        self.section(
            "deadline handling: the exchange waits 10 s before (currencyId=100) or after (200) its expiry check",
        );
        let before = (self.order("before", holder, "currencyId=100 amount=500")).await?;
        let after = (self.order("after", holder, "currencyId=200 amount=500")).await?;
        self.say(
            "(the deadline passes after 5 s; the exchange wakes up after 10 s and finds it expired)",
        );
        for (label, order_id) in [("currencyId=100", before), ("currencyId=200", after)] {
            let status = self.settle(order_id).await?;
            self.http(&format!(":8088/orders/{order_id}")).await?;
            let (what, expected) = (format!("order {order_id}"), "REJECTED DUE TO DEADLINE");
            self.check(label, &what, status, expected);
        }
        let exchange = self.http(&format!(":8088/exchanges/{after}")).await?;
        let what = format!("exchange of order {after}");
        let status = text(&exchange["status"]);
        self.check("currencyId=200", &what, status, "COMPENSATED");
        self.expect_balance("currencyId=200", points, "9500").await
    }

    fn section(&self, title: &str) {
        if self.verbose {
            println!("\n\x1b[1m{title}\x1b[0m");
        }
    }

    fn say(&self, line: &str) {
        if self.verbose {
            println!("{line}");
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// Places an order of `holder` with `items` (httpie's `key=value`) and returns its id.
    async fn order(
        &mut self,
        name: &'static str,
        holder: &str,
        items: &str,
    ) -> anyhow::Result<i64> {
        let order = self
            .http(&format!(":8088/orders holderId=\"{holder}\" {items}"))
            .await?;
        let id = order["id"]
            .as_i64()
            .with_context(|| format!("no order id in {order}"))?;
        self.orders.insert(name, id);
        Ok(id)
    }

    async fn expect_balance(
        &mut self,
        scenario: &str,
        points: &str,
        expected: &str,
    ) -> anyhow::Result<()> {
        let account = self.http(points).await?;
        let what = format!("points of {}", text(&account["userId"]));
        self.check(scenario, &what, decimal(&account["point"]), expected);
        Ok(())
    }

    fn check(&mut self, scenario: &str, what: &str, actual: String, expected: &str) {
        self.checks.push(Check {
            what: format!("{scenario}: {what}"),
            actual,
            expected: expected.into(),
        });
    }

    /// The order's status once it has left PENDING and finished compensating (or whatever it
    /// is after 30 s: the checks then say what went wrong).
    async fn settle(&self, order_id: i64) -> anyhow::Result<String> {
        let order = self
            .wait_for(order_id, |order| {
                order["status"] != "PENDING" && order["compensation"] != "PENDING"
            })
            .await?;
        Ok(text(&order["status"]))
    }

    /// Polls the order until `done` holds for it, for 30 s at most; returns it as last seen.
    async fn wait_for(
        &self,
        order_id: i64,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let (_, order) = self.send(&format!(":8088/orders/{order_id}")).await?;
            if done(&order) || started.elapsed() > SETTLE {
                return Ok(order);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs one of the seed's httpie commands (without the leading `http`), printing it and
    /// its answer when verbose; the answer's body, or an error if it is not a success.
    async fn http(&self, command: &str) -> anyhow::Result<Value> {
        if self.verbose {
            println!("$ http {command}");
        }
        let (status, body) = self.send(command).await?;
        if self.verbose {
            println!("{}\n", serde_json::to_string_pretty(&body)?);
        }
        if !(200..300).contains(&status) {
            bail!("http {command}: {status} {body}");
        }
        Ok(body)
    }

    /// Sends a command as httpie would, quietly: its status and JSON body.
    async fn send(&self, command: &str) -> anyhow::Result<(u16, Value)> {
        let request = Request::parse(command)?;
        let base = (self.urls.get(&request.port))
            .with_context(|| format!("no address for port {} in {command}", request.port))?;
        let url = format!("{base}{}", request.path);
        let request = match request.body {
            Some(body) => self.http.post(&url).json(&body),
            None => self.http.get(&url),
        };
        let answer = request
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .with_context(|| format!("http {command}"))?;
        let status = answer.status().as_u16();
        let text = answer.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// An httpie command line as the seed writes one: `:PORT/path key="value" key=value ...`.
#[derive(Debug, PartialEq)]
struct Request {
    port: u16,
    path: String,
    /// The items as a JSON object of strings; none for a GET.
    body: Option<Value>,
}

impl Request {
    fn parse(command: &str) -> anyhow::Result<Request> {
        let mut words = command.split_whitespace();
        let target = words.next().context("an empty command")?;
        let (port, path) = target
            .strip_prefix(':')
            .and_then(|target| target.split_at_checked(target.find('/')?))
            .with_context(|| format!("{target} is not :PORT/path"))?;
        let mut items = Map::new();
        for item in words {
            let (key, value) = item
                .split_once('=')
                .with_context(|| format!("{item} is not key=value"))?;
            let value = value.trim_matches('"');
            items.insert(key.into(), Value::String(value.into()));
        }
        Ok(Request {
            port: port
                .parse()
                .with_context(|| format!("no port in {target}"))?,
            path: path.into(),
            body: (!items.is_empty()).then_some(Value::Object(items)),
        })
    }
}

/// The status of order `order_id`'s row in a list (deadlines, transactions, exchanges).
fn row_status(list: &Value, order_id: i64) -> String {
    let rows: Vec<String> = (list.as_array().into_iter().flatten())
        .filter(|row| row["orderId"] == order_id)
        .map(|row| text(&row["status"]))
        .collect();
    if rows.is_empty() {
        "none".into()
    } else {
        rows.join(" ")
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), String::from)
}

/// A decimal as the API writes it, with trailing zeros removed: "9500.0000" → "9500".
fn decimal(value: &Value) -> String {
    let text = text(value);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_command_with_items_is_a_post_of_strings_and_one_without_is_a_get() {
        let post = Request::parse(":8088/orders holderId=\"jjy\" currencyId=1 amount=500");
        assert_eq!(
            post.unwrap(),
            Request {
                port: 8088,
                path: "/orders".into(),
                body: Some(json!({ "holderId": "jjy", "currencyId": "1", "amount": "500" })),
            }
        );
        let get = Request::parse(":8083/transactions").unwrap();
        assert_eq!(
            (get.port, get.path.as_str(), get.body),
            (8083, "/transactions", None)
        );
        assert!(Request::parse("localhost/orders").is_err());
        assert!(Request::parse(":8088/orders amount").is_err());
    }

    #[test]
    fn a_check_passes_only_when_it_saw_what_was_expected() {
        let check = |actual: &str| Check {
            what: "happy path: order 1".into(),
            actual: actual.into(),
            expected: "APPROVED".into(),
        };
        assert!(check("APPROVED").passed());
        assert_eq!(
            check("APPROVED").to_string(),
            "ok    happy path: order 1: APPROVED"
        );
        assert_eq!(
            check("PENDING").to_string(),
            "FAIL  happy path: order 1: PENDING (expected APPROVED)"
        );
    }

    #[test]
    fn a_rows_status_is_found_by_its_order_and_decimals_lose_their_trailing_zeros() {
        let list =
            json!([{ "orderId": 1, "status": "USED" }, { "orderId": 2, "status": "REJECTED" }]);
        assert_eq!(row_status(&list, 2), "REJECTED");
        assert_eq!(row_status(&list, 3), "none");
        assert_eq!(decimal(&json!("9500.0000")), "9500");
        assert_eq!(decimal(&json!("12.7500")), "12.75");
    }
}
