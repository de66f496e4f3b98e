//! Latency statistics: an HDR histogram of nanoseconds, percentile summaries, the median of
//! per-round values (the interleaved-rounds method that survives a noisy 2-core machine) and ratios.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded (longer samples are clamped to it).
const MAX_RECORDED_NANOS: u64 = 120_000_000_000;

/// Latencies of one measurement, in nanoseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    #[allow(clippy::expect_used)] // constant bounds: 1 ns .. 120 s at 3 digits is always valid
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, MAX_RECORDED_NANOS, 3)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos())
            .unwrap_or(MAX_RECORDED_NANOS)
            .clamp(1, MAX_RECORDED_NANOS);
        self.histogram.saturating_record(nanos);
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Both histograms share the bounds of `new`, so adding cannot fail on range.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Value at `quantile` (0..=1) in microseconds; 0 when empty.
    pub fn quantile_us(&self, quantile: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1_000.0
    }

    pub fn summary(&self) -> Percentiles {
        Percentiles {
            p50_us: self.quantile_us(0.50),
            p99_us: self.quantile_us(0.99),
            max_us: if self.histogram.is_empty() {
                0.0
            } else {
                self.histogram.max() as f64 / 1_000.0
            },
            count: self.count(),
        }
    }
}

/// Percentiles of a latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub count: u64,
}

/// Median of `values` (mean of the two middle values for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let upper = sorted.get(middle).copied()?;
    if sorted.len() % 2 == 1 {
        Some(upper)
    } else {
        let lower = sorted.get(middle - 1).copied()?;
        Some((lower + upper) / 2.0)
    }
}

/// Interquartile range (p25, p75) of `values` by linear interpolation; `None` when empty.
pub fn interquartile_range(values: &[f64]) -> Option<(f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some((interpolate(&sorted, 0.25)?, interpolate(&sorted, 0.75)?))
}

fn interpolate(sorted: &[f64], quantile: f64) -> Option<f64> {
    let position = quantile * (sorted.len().saturating_sub(1)) as f64;
    let lower_index = position.floor() as usize;
    let upper_index = position.ceil() as usize;
    let lower = *sorted.get(lower_index)?;
    let upper = *sorted.get(upper_index)?;
    Some(lower + (upper - lower) * (position - lower_index as f64))
}

/// Per-round differences `target − baseline` (rounds are paired by index).
pub fn paired_differences(target: &[f64], baseline: &[f64]) -> Vec<f64> {
    target
        .iter()
        .zip(baseline)
        .map(|(target, baseline)| target - baseline)
        .collect()
}

/// `numerator / denominator`, `None` when the denominator is not a positive finite number.
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator.is_finite() && denominator > 0.0 && numerator.is_finite())
        .then(|| numerator / denominator)
}

/// An added latency: the median over rounds of (target − direct), with its IQR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Added {
    pub median_us: f64,
    pub iqr_low_us: f64,
    pub iqr_high_us: f64,
}

impl Added {
    /// From the per-round values of a target and of the direct baseline; `None` without rounds.
    pub fn from_rounds(target: &[f64], direct: &[f64]) -> Option<Self> {
        let differences = paired_differences(target, direct);
        let median_us = median(&differences)?;
        let (iqr_low_us, iqr_high_us) = interquartile_range(&differences)?;
        Some(Self {
            median_us,
            iqr_low_us,
            iqr_high_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut latencies = Latencies::new();
        for micros in 1..=100u64 {
            latencies.record(Duration::from_micros(micros));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 100);
        assert!((summary.p50_us - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_us - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_us - 100.0).abs() < 0.1, "{summary:?}");
    }

    #[test]
    fn empty_latencies_summarise_to_zero() {
        assert_eq!(Latencies::new().summary(), Percentiles::default());
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(1_000));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!((a.quantile_us(1.0) - 1_000.0).abs() < 1.0);
    }

    #[test]
    fn oversized_samples_are_clamped_not_lost() {
        let mut latencies = Latencies::new();
        latencies.record(Duration::from_secs(10_000));
        assert_eq!(latencies.count(), 1);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn interquartile_range_interpolates() {
        assert_eq!(
            interquartile_range(&[1.0, 2.0, 3.0, 4.0, 5.0]),
            Some((2.0, 4.0))
        );
        assert_eq!(interquartile_range(&[7.0]), Some((7.0, 7.0)));
        assert_eq!(interquartile_range(&[]), None);
    }

    #[test]
    fn ratio_refuses_non_positive_denominators() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(3.0, -1.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn added_is_the_median_of_paired_round_differences() {
        let direct = [100.0, 110.0, 90.0];
        let proxy = [150.0, 140.0, 200.0];
        let added = Added::from_rounds(&proxy, &direct).unwrap();
        // differences 50, 30, 110
        assert_eq!(added.median_us, 50.0);
        assert_eq!(added.iqr_low_us, 40.0);
        assert_eq!(added.iqr_high_us, 80.0);
        assert_eq!(Added::from_rounds(&[], &[]), None);
    }
}
