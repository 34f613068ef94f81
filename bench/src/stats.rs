//! Summary statistics for timing samples: percentiles and a bootstrap confidence interval of
//! the median. Small on purpose, and tested against samples whose answers are known.
//!
//! Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, numpy's
//! and R's default), so `p50` of an even-sized sample is the mean of the two middle values.
//! The interval is a percentile bootstrap: resample with replacement, take each resample's
//! median, report the 2.5th and 97.5th percentiles of those medians. The generator is seeded,
//! so a report re-rendered from the same samples shows the same interval.

use crate::model::Summary;

/// Resamples drawn for the bootstrap: enough that the interval's ends are stable to well
/// under the machine's noise, cheap enough for thousands of samples.
const BOOTSTRAP_RESAMPLES: usize = 2000;
const BOOTSTRAP_SEED: u64 = 0x5eed_b01d_4ead;

/// Percentile `p` (0..=100) of already sorted, non-empty `sorted`.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of an empty sample");
    assert!((0.0..=100.0).contains(&p), "percentile {p} outside 0..=100");
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn sorted_copy(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Summarise `samples`; `None` for an empty series (a backend that produced no sample).
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let sorted = sorted_copy(samples);
    Some(Summary {
        n: sorted.len(),
        min: sorted[0],
        p50: percentile_sorted(&sorted, 50.0),
        p90: percentile_sorted(&sorted, 90.0),
        p99: percentile_sorted(&sorted, 99.0),
        max: sorted[sorted.len() - 1],
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        median_ci95: bootstrap_median_ci(&sorted, 0.95, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED),
    })
}

/// Percentile-bootstrap interval of the median at `confidence` (e.g. 0.95).
pub fn bootstrap_median_ci(
    samples: &[f64],
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    bootstrap_ci(samples, confidence, resamples, seed, |sorted| {
        percentile_sorted(sorted, 50.0)
    })
}

/// Percentile-bootstrap interval of `statistic` (given each resample sorted) at `confidence`.
pub fn bootstrap_ci(
    samples: &[f64],
    confidence: f64,
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[f64]) -> f64,
) -> (f64, f64) {
    assert!(!samples.is_empty(), "bootstrap of an empty sample");
    let mut rng = SplitMix64(seed);
    let mut resample = vec![0.0; samples.len()];
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in resample.iter_mut() {
            *slot = samples[rng.below(samples.len())];
        }
        resample.sort_by(f64::total_cmp);
        stats.push(statistic(&resample));
    }
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0 * 100.0;
    (
        percentile_sorted(&stats, tail),
        percentile_sorted(&stats, 100.0 - tail),
    )
}

/// The mean of sorted, non-empty `sorted` without its `trim` lowest and `trim` highest values
/// (all of them when that would leave none).
pub fn trimmed_mean_sorted(sorted: &[f64], trim: usize) -> f64 {
    assert!(!sorted.is_empty(), "mean of an empty sample");
    let kept = if 2 * trim < sorted.len() {
        &sorted[trim..sorted.len() - trim]
    } else {
        sorted
    };
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// A trimmed mean of `samples` with its 95% bootstrap interval: (estimate, (low, high)).
/// `None` for no samples.
pub fn trimmed_mean_ci(samples: &[f64], trim: usize) -> Option<(f64, (f64, f64))> {
    if samples.is_empty() {
        return None;
    }
    let sorted = sorted_copy(samples);
    let estimate = trimmed_mean_sorted(&sorted, trim);
    let ci = bootstrap_ci(&sorted, 0.95, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, |r| {
        trimmed_mean_sorted(r, trim)
    });
    Some((estimate, ci))
}

/// SplitMix64: a tiny, well-known generator; statistical quality is ample for resampling
/// indices and shuffling the backends' order, and it keeps the harness free of an RNG
/// dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (multiply-shift; the bias for our n is far below 2^-40).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }

    /// Shuffle `items` in place (Fisher–Yates): every order equally likely.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_repeatable_from_its_seed_and_reaches_every_order() {
        let order = |seed| {
            let mut v = [0, 1, 2];
            SplitMix64::new(seed).shuffle(&mut v);
            v
        };
        assert_eq!(order(7), order(7));
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let mut v = order(seed);
            seen.insert(v);
            v.sort();
            assert_eq!(v, [0, 1, 2]);
        }
        assert_eq!(seen.len(), 6, "all 3! orders: {seen:?}");
    }

    #[test]
    fn percentiles_of_one_to_ten_match_numpy() {
        // numpy.percentile(range(1, 11), [0, 50, 90, 99, 100]) → 1, 5.5, 9.1, 9.91, 10
        let s: Vec<f64> = (1..=10).map(f64::from).collect();
        let sum = summarize(&s).unwrap();
        assert_eq!(sum.min, 1.0);
        assert_eq!(sum.p50, 5.5);
        assert!((sum.p90 - 9.1).abs() < 1e-12, "{}", sum.p90);
        assert!((sum.p99 - 9.91).abs() < 1e-12, "{}", sum.p99);
        assert_eq!(sum.max, 10.0);
        assert_eq!(sum.mean, 5.5);
    }

    #[test]
    fn trimmed_mean_drops_the_ends() {
        // One outlier at each end of 0, 1, ..., 9: trimming 1 gives the mean of 1..=8.
        let mut s: Vec<f64> = (1..=8).map(f64::from).collect();
        s.extend([-1000.0, 1000.0]);
        let (est, (lo, hi)) = trimmed_mean_ci(&s, 1).unwrap();
        assert_eq!(est, 4.5);
        assert!(lo <= est && est <= hi, "{lo} {est} {hi}");
        assert_eq!(
            trimmed_mean_sorted(&[1.0, 2.0], 1),
            1.5,
            "nothing left: all kept"
        );
        assert_eq!(trimmed_mean_ci(&[], 1), None);
    }

    #[test]
    fn order_of_samples_does_not_matter() {
        let a = [3.0, 1.0, 2.0, 5.0, 4.0];
        let b = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(summarize(&a), summarize(&b));
        assert_eq!(summarize(&a).unwrap().p50, 3.0);
    }

    #[test]
    fn single_sample_and_empty() {
        let one = summarize(&[42.0]).unwrap();
        assert_eq!(
            (one.min, one.p50, one.p99, one.max),
            (42.0, 42.0, 42.0, 42.0)
        );
        assert_eq!(one.median_ci95, (42.0, 42.0));
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn constant_sample_has_a_zero_width_interval() {
        let s = [7.0; 50];
        assert_eq!(summarize(&s).unwrap().median_ci95, (7.0, 7.0));
    }

    #[test]
    fn median_interval_brackets_the_median_and_narrows_with_n() {
        // 1..=n: the median is (n+1)/2, and its bootstrap interval's width grows like sqrt(n)
        // while the range grows like n, so the relative width shrinks.
        let width = |n: u32| {
            let s: Vec<f64> = (1..=n).map(f64::from).collect();
            let sum = summarize(&s).unwrap();
            let (lo, hi) = sum.median_ci95;
            assert!(
                lo <= sum.p50 && sum.p50 <= hi,
                "n={n}: {lo} {} {hi}",
                sum.p50
            );
            (hi - lo) / f64::from(n)
        };
        let (w101, w1001) = (width(101), width(1001));
        assert!(w1001 < w101 / 2.0, "relative widths {w101} → {w1001}");
        // For the uniform 1..=1001 the median's standard error is ~ n/(2√n) ≈ 15.8, so the
        // 95% interval is about ±31: check the order of magnitude, not the last digit.
        let s: Vec<f64> = (1..=1001).map(f64::from).collect();
        let (lo, hi) = summarize(&s).unwrap().median_ci95;
        assert!(
            (15.0..60.0).contains(&(501.0 - lo)) && (15.0..60.0).contains(&(hi - 501.0)),
            "{lo}..{hi}"
        );
    }

    #[test]
    fn bootstrap_is_deterministic_for_a_seed() {
        let s = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0];
        assert_eq!(
            bootstrap_median_ci(&s, 0.95, 500, 1),
            bootstrap_median_ci(&s, 0.95, 500, 1)
        );
    }
}
