//! Outstanding bytes of each call stack over time, and what they say: which
//! stack keeps growing (a leak), which filled and stopped (a cache), which
//! allocates a lot and keeps nothing (churn), and how much each call of a
//! unit of work (`--work`) leaves behind.
//!
//! The verdict itself is [`super::trend`]'s, the same rule `leak top` applies
//! to processes. This module only keeps the series, bounded: at most
//! `max_tracked` stacks (the largest holders win a slot) with at most
//! `max_points` points each (halved when full, keeping troughs:
//! [`super::series::thin`]).

use std::{collections::HashMap, hash::Hash};

use super::{
    series,
    trend::{self, Fit, Thresholds, Trend},
};
use crate::aggregate::Totals;

/// One stack's readings: `(seconds since attach, bytes)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Series {
    /// Outstanding bytes as of the last GC, one point per tick at which a GC
    /// had completed since the previous point (what the verdict judges,
    /// once there are enough of them).
    pub outstanding: Vec<(f64, f64)>,
    /// Outstanding bytes right now, garbage not yet swept included (what
    /// bytes per call is measured on: it does not lag a GC cycle behind).
    pub current: Vec<(f64, f64)>,
    /// Bytes allocated since attach (cumulative).
    pub allocated: Vec<(f64, f64)>,
}

/// Series of many stacks, keyed by any stack id, plus the work counter.
#[derive(Debug)]
pub(crate) struct GrowthTracker<K> {
    series: HashMap<K, Series>,
    /// GC cycles at the last `record`.
    gc_cycles: Option<u64>,
    work: Vec<(f64, f64)>,
    max_tracked: usize,
    max_points: usize,
    /// No collections: readings are what is held (see [`Self::exact`]).
    exact: bool,
}

impl<K: Copy + Eq + Hash + Ord> GrowthTracker<K> {
    /// A tracker of at most `max_tracked` stacks, `max_points` points each.
    pub(crate) fn new(max_tracked: usize, max_points: usize) -> Self {
        Self {
            series: HashMap::new(),
            gc_cycles: None,
            work: Vec::new(),
            max_tracked: max_tracked.max(1),
            max_points: max_points.max(8),
            exact: false,
        }
    }

    /// A tracker of memory no collector frees (malloc'd, mapped): every
    /// reading is exact, so each is a point of the series a verdict is
    /// judged on (record with a count that moves at every reading).
    pub(crate) fn exact(max_tracked: usize, max_points: usize) -> Self {
        Self {
            exact: true,
            ..Self::new(max_tracked, max_points)
        }
    }

    /// Records the work counter (cumulative calls) at `t`.
    pub(crate) fn record_work(&mut self, t: f64, calls: u64) {
        self.work.push((t, calls as f64));
        series::thin(&mut self.work, self.max_points);
    }

    /// Records every stack's totals at `t`: `(stack, totals as of the last
    /// GC, outstanding bytes now)`, with the GC cycles completed so far (the
    /// as-of-GC view only gets a point when that moved). Stacks holding the
    /// most win the slots; when all are taken, a newcomer that holds more
    /// than the smallest tracked stack takes its place.
    pub(crate) fn record(&mut self, t: f64, stacks: &[(K, Totals, f64)], gc_cycles: u64) {
        let after_gc = self.gc_cycles != Some(gc_cycles) && gc_cycles > 0;
        self.gc_cycles = Some(gc_cycles);
        let mut by_size: Vec<&(K, Totals, f64)> = stacks
            .iter()
            .filter(|(_, tot, now)| {
                tot.outstanding_bytes > 0.0 || tot.allocated_bytes > 0.0 || *now > 0.0
            })
            .collect();
        by_size.sort_by(|a, b| {
            b.1.outstanding_bytes
                .total_cmp(&a.1.outstanding_bytes)
                .then(b.1.allocated_bytes.total_cmp(&a.1.allocated_bytes))
                .then(a.0.cmp(&b.0))
        });
        for (key, tot, now) in by_size.into_iter().take(self.max_tracked) {
            if !self.series.contains_key(key) && self.series.len() >= self.max_tracked {
                // Evict the smallest holder, if smaller than this one.
                let smallest = self
                    .series
                    .iter()
                    .map(|(k, s)| (*k, s.outstanding.last().map(|p| p.1).unwrap_or(0.0)))
                    .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                match smallest {
                    Some((k, held)) if held < tot.outstanding_bytes => {
                        self.series.remove(&k);
                    }
                    _ => continue,
                }
            }
            let s = self.series.entry(*key).or_default();
            if after_gc {
                s.outstanding.push((t, tot.outstanding_bytes));
            }
            s.current.push((t, *now));
            s.allocated.push((t, tot.allocated_bytes));
            series::thin(&mut s.outstanding, self.max_points);
            series::thin(&mut s.current, self.max_points);
            series::thin(&mut s.allocated, self.max_points);
        }
    }

    /// The series of one stack, if tracked.
    pub(crate) fn series(&self, key: &K) -> Option<&Series> {
        self.series.get(key)
    }

    /// The verdict on one stack, if tracked: judged on what survives
    /// collections when enough of them have been seen (so churn never looks
    /// like growth), else on the bytes held now (a heap that only grows may
    /// go a long time between collections).
    pub(crate) fn assess(&self, key: &K) -> Option<Trend> {
        let s = self.series.get(key)?;
        let thresholds = Thresholds::STACK;
        if self.exact || s.outstanding.len() >= thresholds.min_points {
            return Some(trend::assess(
                &s.outstanding,
                Some(&s.allocated),
                &thresholds,
            ));
        }
        let mut trend = trend::assess(&s.current, Some(&s.allocated), &thresholds);
        trend.reason = format!("{} (few GCs yet: judged on bytes held now)", trend.reason);
        Some(trend)
    }

    /// Bytes gained per unit of work along `series` (the slope of bytes
    /// against the work counter); `None` without enough work recorded.
    pub(crate) fn per_call(&self, series: &[(f64, f64)]) -> Option<Fit> {
        let calls = self.work.last()?.1 - self.work.first()?.1;
        if self.work.len() < 3 || calls < 2.0 || series.len() < 3 {
            return None;
        }
        Some(trend::slope_per_unit(series, &self.work))
    }

    /// Calls counted so far.
    pub(crate) fn calls(&self) -> u64 {
        self.work.last().map(|w| w.1 as u64).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::trend::Verdict;

    fn held(b: f64, allocated: f64) -> Totals {
        Totals {
            outstanding_bytes: b,
            allocated_bytes: allocated,
            ..Totals::default()
        }
    }

    #[test]
    fn leak_cache_and_churn_told_apart() {
        let mut g = GrowthTracker::new(16, 1000);
        for s in 0..=60u32 {
            let t = f64::from(s);
            let leak = 200.0 * 1024.0 * t;
            let cache = 50.0 * 1024.0 * 1024.0 * (t / 10.0).min(1.0);
            let churn = 1024.0 * 1024.0 * if s % 2 == 0 { 1.0 } else { 2.0 };
            g.record(
                t,
                &[
                    (1u32, held(leak, leak), leak),
                    (2, held(cache, cache), cache),
                    (3, held(churn, 100.0 * 1024.0 * 1024.0 * t), churn),
                ],
                u64::from(s),
            );
        }
        let leak = g.assess(&1).unwrap();
        assert_eq!(leak.verdict, Verdict::Leaking, "{}", leak.reason);
        assert!((leak.slope / (200.0 * 1024.0) - 1.0).abs() < 0.05);
        assert_eq!(g.assess(&2).unwrap().verdict, Verdict::Steady);
        assert_eq!(g.assess(&3).unwrap().verdict, Verdict::Churn);
    }

    #[test]
    fn bytes_per_call_is_the_slope_against_work() {
        let mut g = GrowthTracker::new(4, 100);
        for s in 0..20u32 {
            let t = f64::from(s);
            let calls = u64::from(s * s); // uneven request rate
            g.record_work(t, calls);
            let b = 10240.0 * calls as f64;
            g.record(t, &[(7u32, held(b * 0.5, 0.0), b)], u64::from(s));
        }
        let fit = g.per_call(&g.series(&7).unwrap().current).unwrap();
        assert!((fit.slope - 10240.0).abs() < 1e-6, "{}", fit.slope);
        assert_eq!(g.calls(), 361);
    }

    #[test]
    fn bounded_stacks_and_points() {
        let mut g = GrowthTracker::new(2, 10);
        for s in 0..100u32 {
            let t = f64::from(s);
            g.record(
                t,
                &[
                    (1u32, held(10.0, 10.0), 10.0),
                    (2, held(20.0, 20.0), 20.0),
                    (3, held(t, t), t),
                ],
                u64::from(s),
            );
        }
        // Stack 3 grew past stack 1 and took its slot.
        assert!(g.series(&1).is_none());
        let s3 = g.series(&3).unwrap();
        assert!(s3.outstanding.len() <= 10);
        assert_eq!(s3.outstanding.last().unwrap().0, 99.0);
        assert!(g.series(&2).is_some());
    }

    #[test]
    fn few_collections_judge_bytes_held_now() {
        let mut g = GrowthTracker::new(4, 100);
        for s in 0..=40u32 {
            let t = f64::from(s);
            let now = 1024.0 * 1024.0 * t;
            // A collection every 10 s: only 4 points as of a GC.
            g.record(t, &[(1u32, held(now, now), now)], u64::from(s / 10));
        }
        assert_eq!(g.series(&1).unwrap().outstanding.len(), 4);
        let trend = g.assess(&1).unwrap();
        assert_eq!(trend.verdict, Verdict::Leaking, "{}", trend.reason);
        assert!(trend.reason.contains("few GCs"), "{}", trend.reason);
    }

    #[test]
    fn no_work_no_per_call() {
        let g: GrowthTracker<u32> = GrowthTracker::new(2, 10);
        assert!(g.per_call(&[(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]).is_none());
    }
}
