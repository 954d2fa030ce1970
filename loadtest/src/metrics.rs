//! Reading a service's counters from its Prometheus page (`/metrics`), as a monitoring system
//! would: no database is touched, so reading them changes none of the figures measured.

use anyhow::Context;

/// The sum of the samples of counter `name` whose labels include every pair of `labels`.
/// A counter with no such sample sums to zero.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, tags) = match series.split_once('{') {
                Some((metric, tags)) => (metric, tags.strip_suffix('}')?),
                None => (series, ""),
            };
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(key, value)| has_label(tags, key, value));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Whether `key="value"` is among the labels (label values with commas are not expected).
fn has_label(tags: &str, key: &str, value: &str) -> bool {
    tags.split(',').any(|tag| {
        tag.split_once('=').is_some_and(|(k, v)| {
            k == key && v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) == Some(value)
        })
    })
}

/// The Prometheus page of the service at `base` (`http://127.0.0.1:8084`).
pub async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let url = format!("{base}/metrics");
    let answer = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?;
    answer.text().await.with_context(|| format!("GET {url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP messages_consumed Messages consumed, by event type.
# TYPE messages_consumed counter
messages_consumed{app="deadline",job="OrderCreated"} 1500
messages_consumed{app="deadline",job="OrderPlaced"} 1200
messages_consumed{app="deadline",job="OrderRejected"} 300
messages_consumed_total_other{app="deadline",job="OrderPlaced"} 7
duplicates_skipped{app="deadline",job="OrderPlaced"} 4
outbox_backlog 0
"#;

    #[test]
    fn the_samples_whose_labels_match_are_summed() {
        assert_eq!(
            sum(PAGE, "messages_consumed", &[("job", "OrderPlaced")]),
            1200.0
        );
        assert_eq!(
            sum(PAGE, "messages_consumed", &[("app", "deadline")]),
            3000.0
        );
    }

    #[test]
    fn a_counter_is_found_by_its_whole_name_only() {
        assert_eq!(sum(PAGE, "messages", &[]), 0.0);
        assert_eq!(sum(PAGE, "outbox_backlog", &[]), 0.0);
        assert_eq!(sum(PAGE, "duplicates_skipped", &[]), 4.0);
    }

    #[test]
    fn a_label_value_must_match_whole() {
        assert_eq!(sum(PAGE, "messages_consumed", &[("job", "Order")]), 0.0);
    }
}
