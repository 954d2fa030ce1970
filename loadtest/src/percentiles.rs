//! Percentiles of a sample, by the nearest-rank method: the p-th percentile is a value that was
//! measured (the smallest one with at least p% of the sample at or below it), never an
//! interpolation between two, so a p99 of 40 ms means some saga really took 40 ms.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// The percentiles of `values`, or none for an empty sample. NaNs are left out.
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        values.retain(|value| !value.is_nan());
        values.sort_by(f64::total_cmp);
        let max = *values.last()?;
        Some(Percentiles {
            count: values.len(),
            p50: percentile(&values, 50.0),
            p90: percentile(&values, 90.0),
            p99: percentile(&values, 99.0),
            max,
        })
    }
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of a sorted, non-empty sample.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentiles_of_one_to_a_hundred_are_the_values_at_their_ranks() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(values).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
    }

    #[test]
    fn a_percentile_is_always_a_measured_value_never_an_interpolation() {
        let p = Percentiles::of(vec![10.0, 20.0, 30.0]).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (20.0, 30.0, 30.0, 30.0));
    }

    #[test]
    fn the_p99_of_a_thousand_values_leaves_out_the_ten_slowest() {
        let values: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(Percentiles::of(values).unwrap().p99, 990.0);
    }

    #[test]
    fn one_value_is_every_percentile_of_itself() {
        let p = Percentiles::of(vec![7.5]).unwrap();
        assert_eq!((p.p50, p.p99, p.max), (7.5, 7.5, 7.5));
    }

    #[test]
    fn an_empty_sample_has_no_percentiles() {
        assert_eq!(Percentiles::of(Vec::new()), None);
        assert_eq!(Percentiles::of(vec![f64::NAN]), None);
    }
}
