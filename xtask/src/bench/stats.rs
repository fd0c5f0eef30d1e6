//! Summaries of repeated measurements: median and range, and the paired
//! ratios the report is written in. Pure functions, no I/O.

/// Median and range of one figure over the rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Rounds that produced the figure.
    pub n: usize,
}

/// The summary of `values`, or `None` when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Round-by-round `(round, f(arm, baseline))` for rounds where both have a
/// value: each traced run is compared with the untraced run of the same
/// round, so slow drift of the machine (other builds) cancels.
pub fn paired(
    arm: &[(usize, f64)],
    baseline: &[(usize, f64)],
    f: impl Fn(f64, f64) -> f64,
) -> Vec<(usize, f64)> {
    arm.iter()
        .filter_map(|(round, a)| {
            baseline
                .iter()
                .find(|(r, _)| r == round)
                .map(|(_, b)| (*round, f(*a, *b)))
        })
        .collect()
}

/// The summary of the values of `(round, value)` pairs.
pub fn summarize_rounds(values: &[(usize, f64)]) -> Option<Summary> {
    summarize(&values.iter().map(|(_, v)| *v).collect::<Vec<_>>())
}

/// How many times more time the peer adds than leak, from the medians of
/// the paired added times. `None` when leak's added time is not above zero
/// (below the noise): the report then says so instead of printing ∞.
pub fn added_time_ratio(peer_added: f64, leak_added: f64) -> Option<f64> {
    (leak_added > 0.0 && peer_added.is_finite()).then(|| peer_added / leak_added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn nothing_to_summarize() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[f64::NAN]), None);
    }

    #[test]
    fn pairs_by_round_and_skips_missing() {
        let arm = [(0, 2.0), (1, 3.0), (2, 9.0)];
        let base = [(0, 1.0), (1, 2.0)];
        assert_eq!(paired(&arm, &base, |a, b| a / b), vec![(0, 2.0), (1, 1.5)]);
    }

    #[test]
    fn added_time_ratio_needs_a_positive_leak_cost() {
        assert_eq!(added_time_ratio(10.0, 0.5), Some(20.0));
        assert_eq!(added_time_ratio(10.0, 0.0), None);
        assert_eq!(added_time_ratio(10.0, -0.1), None);
    }
}
