//! Whether a series of memory readings is leaking: the one growth verdict
//! shared by `leak top` (a process's RSS over time) and `leak trace` (a call
//! stack's outstanding bytes over time). Pure: it takes `(seconds, bytes)`
//! samples, evenly spaced or not, and returns a [`Trend`].
//!
//! Garbage-collected memory never sits still: it climbs while the program
//! allocates and drops at each collection, a sawtooth. The peaks show how much
//! garbage piled up between collections; the troughs show what survived. A
//! leak is memory that grows without ever reaching a steady state, so the
//! verdict follows the troughs:
//!
//! 1. Troughs: the window is cut into equal slices of time (12 by default,
//!    fewer when samples are scarce or collections rare, so that each slice
//!    holds a whole sawtooth cycle); the lowest reading of each slice is a
//!    trough.
//! 2. Trend: a least-squares line through the troughs gives the growth rate
//!    and R², how well a straight line explains them. The same fit over every
//!    sample is reported alongside.
//! 3. Significance: growth counts only if the trough line rises by at least
//!    1 MiB over the window and by at least 2% of the trough level (64 KiB
//!    and 5% for a call stack). Less than that is Steady.
//! 4. Recency: the troughs of the last third must still rise at least half
//!    as fast. If the last third alone would not be significant, memory grew
//!    and then levelled off (a step then a plateau, a cache that filled):
//!    Steady. Still rising but slower: Growing.
//! 5. Confidence: Leaking needs R² ≥ 0.8 on the troughs and at least 10
//!    samples over at least 30 s; until then a rise is only Growing.
//! 6. Troughs that fall (and are still falling) are Shrinking. A call stack
//!    that allocated at least 10× what it holds while what it holds stays
//!    flat is Churn: busy, but it keeps nothing.

use std::fmt;

pub(crate) use crate::units::Quantity;
use crate::units::{human_bytes, human_secs};

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * KIB;

/// What a series of memory readings says about a leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Troughs rise steadily and are still rising at the end of the window.
    Leaking,
    /// Rising, but not yet convincingly a leak: too few samples, too short a
    /// window, troughs too scattered, or growth slowing down.
    Growing,
    /// Flat, a sawtooth that levels off, or a rise that has since stopped.
    Steady,
    /// Troughs falling and still falling.
    Shrinking,
    /// Flat while allocating many times what it holds (call stacks only).
    Churn,
}

impl Verdict {
    /// The verdict as one lowercase word, for tables.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Leaking => "leaking",
            Verdict::Growing => "growing",
            Verdict::Steady => "steady",
            Verdict::Shrinking => "shrinking",
            Verdict::Churn => "churn",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so callers can align it with `{:<9}`.
        f.pad(self.as_str())
    }
}

/// Where the lines between verdicts lie. [`Thresholds::PROCESS`] suits a
/// process's RSS, [`Thresholds::STACK`] a call stack's outstanding bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Thresholds {
    /// Fewest samples before Leaking, Shrinking or Churn is claimed.
    pub min_points: usize,
    /// Shortest window, in seconds, before Leaking, Shrinking or Churn is
    /// claimed.
    pub min_span_secs: f64,
    /// Smallest change of the trough line over the window that counts.
    pub min_change_bytes: f64,
    /// Smallest change that counts, as a fraction of the mean trough level.
    pub min_change_fraction: f64,
    /// Smallest R² of the trough line for Leaking.
    pub min_r2: f64,
    /// Slope of the last third's troughs, as a fraction of the whole
    /// window's, below which growth is slowing (Growing, not Leaking).
    pub recent_ratio: f64,
    /// Slices of time the window is cut into, one trough each; rounded down
    /// to a multiple of 3 (at least 6) and lowered to about 3 samples a slice.
    pub windows: usize,
    /// Bytes allocated over the window, as a multiple of the level held,
    /// above which a flat series is Churn.
    pub churn_ratio: f64,
    /// What the series counts, for the reasons' words.
    pub quantity: Quantity,
}

impl Thresholds {
    /// For a process's resident memory.
    pub(crate) const PROCESS: Thresholds = Thresholds {
        min_points: 10,
        min_span_secs: 30.0,
        min_change_bytes: MIB,
        min_change_fraction: 0.02,
        min_r2: 0.8,
        recent_ratio: 0.5,
        windows: 12,
        churn_ratio: 10.0,
        quantity: Quantity::Bytes,
    };

    /// For one call stack's outstanding bytes: a smaller absolute floor, since
    /// one leaking stack may hold far less than a whole process.
    pub(crate) const STACK: Thresholds = Thresholds {
        min_change_bytes: 64.0 * KIB,
        min_change_fraction: 0.05,
        ..Thresholds::PROCESS
    };

    /// For a Go heap after GC: one point a GC, each a measurement with no
    /// sawtooth between, so five of them over 20 s (first GC to last) are
    /// enough to judge.
    pub(crate) const HEAP_AFTER_GC: Thresholds = Thresholds {
        min_points: 5,
        min_span_secs: 20.0,
        ..Thresholds::PROCESS
    };

    /// For the number of goroutines that share a stack: ten goroutines, or
    /// 5% of the group, is a change (a pool that holds still moves by none).
    pub(crate) const GOROUTINES: Thresholds = Thresholds {
        min_change_bytes: 10.0,
        min_change_fraction: 0.05,
        quantity: Quantity::Goroutines,
        ..Thresholds::PROCESS
    };
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::PROCESS
    }
}

/// A least-squares line `y = slope · x + intercept`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Fit {
    /// Change in y per unit of x (bytes per second for a time series).
    pub slope: f64,
    /// y where the line crosses x = 0.
    pub intercept: f64,
    /// Share of y's variance the line explains, 0 to 1.
    pub r2: f64,
}

/// Fits a straight line through `points` by least squares, skipping
/// non-finite points. Constant y gives slope 0 and R² = 1 (the line explains
/// everything); fewer than two distinct x give slope 0, the mean of y as
/// intercept, and R² = 0.
pub(crate) fn linear_fit(points: &[(f64, f64)]) -> Fit {
    let finite = || {
        points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let n = finite().count();
    if n == 0 {
        return Fit::default();
    }
    let (sum_x, sum_y) = finite().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mean_x, mean_y) = (sum_x / n as f64, sum_y / n as f64);
    // Centred sums: timestamps may be Unix seconds, where raw sums of squares
    // lose all precision.
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in finite() {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return Fit {
            slope: 0.0,
            intercept: mean_y,
            r2: 0.0,
        };
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy / (sxx * syy)).min(1.0)
    };
    Fit {
        slope,
        intercept: mean_y - slope * mean_x,
        r2,
    }
}

/// Bytes per unit of work, e.g. bytes retained per request: the fit of
/// `bytes` against a cumulative work counter (requests served, jobs done).
/// Both are `(seconds, value)` series; the counter is interpolated linearly
/// at each byte sample's time, so the two need not be read together. Byte
/// samples outside the counter's time range are dropped.
pub(crate) fn slope_per_unit(bytes: &[(f64, f64)], work: &[(f64, f64)]) -> Fit {
    let work = clean(work);
    let pairs: Vec<(f64, f64)> = clean(bytes)
        .into_iter()
        .filter_map(|(t, b)| interpolate(&work, t).map(|w| (w, b)))
        .collect();
    linear_fit(&pairs)
}

/// The verdict on one series, with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Trend {
    /// What the series says.
    pub verdict: Verdict,
    /// Why, in a few words: "troughs rise 2.1 MiB/min (R²=0.97), still
    /// rising in last third".
    pub reason: String,
    /// Growth rate of the troughs, bytes per second.
    pub slope: f64,
    /// Line through the troughs (x in seconds).
    pub troughs: Fit,
    /// Line through every sample (x in seconds).
    pub overall: Fit,
    /// Growth rate of the troughs in the last third of the window, bytes per
    /// second.
    pub recent_slope: f64,
    /// Change of the trough line over the window, bytes.
    pub change_bytes: f64,
    /// Mean trough level, bytes.
    pub level_bytes: f64,
    /// Seconds from the first sample to the last.
    pub span_secs: f64,
    /// Samples used (finite ones).
    pub points: usize,
    /// Bytes allocated over the window, when an allocated series was given.
    pub allocated_bytes: Option<f64>,
}

/// Judges a series of `(seconds, bytes)` samples (any order; non-finite ones
/// are skipped) by the rule in the module documentation.
///
/// `allocated`, for call stacks, is the stack's cumulative allocated-bytes
/// counter as `(seconds, bytes)`; what it grew by over its span decides
/// Churn. Pass `None` for processes.
pub(crate) fn assess(
    samples: &[(f64, f64)],
    allocated: Option<&[(f64, f64)]>,
    thresholds: &Thresholds,
) -> Trend {
    let samples = clean(samples);
    let allocated_bytes = allocated.and_then(|a| growth_over_span(&clean(a)));
    let points = samples.len();
    let span_secs = match (samples.first(), samples.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => 0.0,
    };
    if points < 2 || span_secs <= 0.0 {
        return not_enough_data(&samples, span_secs, allocated_bytes);
    }
    let e = Evidence::of(&samples, span_secs, thresholds);
    let (verdict, reason) = if e.change_bytes() >= e.bar {
        e.rising()
    } else if e.change_bytes() <= -e.bar {
        e.falling()
    } else {
        e.flat()
    };
    let (verdict, reason) = match allocated_bytes {
        Some(alloc) if verdict == Verdict::Steady && e.churns(alloc) => e.churn(alloc),
        _ => (verdict, reason),
    };
    Trend {
        verdict,
        reason,
        slope: e.troughs.slope,
        troughs: e.troughs,
        overall: e.overall,
        recent_slope: e.recent_slope,
        change_bytes: e.change_bytes(),
        level_bytes: e.level_bytes,
        span_secs,
        points,
        allocated_bytes,
    }
}

/// What a cumulative counter grew by from its first sample to its last;
/// `None` with fewer than two.
fn growth_over_span(counter: &[(f64, f64)]) -> Option<f64> {
    match (counter.first(), counter.last()) {
        (Some(first), Some(last)) if counter.len() >= 2 => Some(last.1 - first.1),
        _ => None,
    }
}

/// The verdict on fewer than two samples, or on samples all at one time:
/// Steady, and saying why.
fn not_enough_data(samples: &[(f64, f64)], span_secs: f64, allocated_bytes: Option<f64>) -> Trend {
    let points = samples.len();
    Trend {
        verdict: Verdict::Steady,
        reason: format!(
            "not enough data: {points} sample{} over {}",
            if points == 1 { "" } else { "s" },
            human_secs(span_secs)
        ),
        slope: 0.0,
        troughs: Fit::default(),
        overall: Fit::default(),
        recent_slope: 0.0,
        change_bytes: 0.0,
        level_bytes: samples.iter().map(|s| s.1).sum::<f64>() / points.max(1) as f64,
        span_secs,
        points,
        allocated_bytes,
    }
}

/// What the troughs of a series show (rules 1, 2 and the last third of 4),
/// and the bar a change must clear (rule 3); each verdict rule is a method.
struct Evidence<'t> {
    thresholds: &'t Thresholds,
    points: usize,
    span_secs: f64,
    /// Line through every sample.
    overall: Fit,
    /// Sawtooth cycles seen.
    cycles: usize,
    /// Line through the troughs.
    troughs: Fit,
    /// Mean trough level.
    level_bytes: f64,
    /// Slope of the troughs of the last third.
    recent_slope: f64,
    /// What the troughs actually did, last minus first, for the reasons:
    /// the fitted line overstates a step.
    trough_moved: f64,
    /// Smallest change over the window that counts (rule 3).
    bar: f64,
    /// Enough samples over a long enough window to claim more than Growing
    /// or Steady (rule 5).
    enough: bool,
}

impl<'t> Evidence<'t> {
    /// `samples` are time-sorted, at least two, over `span_secs` > 0.
    fn of(samples: &[(f64, f64)], span_secs: f64, thresholds: &'t Thresholds) -> Self {
        let points = samples.len();
        let overall = linear_fit(samples);
        let cycles = cycles(samples, &overall);
        let windows = window_count(thresholds, points, cycles);
        let lows = troughs(samples, windows);
        let trough_points: Vec<(f64, f64)> = lows.iter().map(|&(_, p)| p).collect();
        let level_bytes =
            trough_points.iter().map(|p| p.1).sum::<f64>() / trough_points.len() as f64;
        let first_recent = 2 * windows / 3;
        let mut recent: Vec<(f64, f64)> = lows
            .iter()
            .filter(|&&(w, _)| w >= first_recent)
            .map(|&(_, p)| p)
            .collect();
        if recent.len() < 2 {
            // Uneven sampling left the last third with too few troughs: the
            // last two troughs are the best view of "lately" there is.
            recent = trough_points[trough_points.len() - 2..].to_vec();
        }
        Evidence {
            thresholds,
            points,
            span_secs,
            overall,
            cycles,
            troughs: linear_fit(&trough_points),
            level_bytes,
            recent_slope: linear_fit(&recent).slope,
            trough_moved: trough_points[trough_points.len() - 1].1 - trough_points[0].1,
            bar: thresholds
                .min_change_bytes
                .max(thresholds.min_change_fraction * level_bytes.abs()),
            enough: points >= thresholds.min_points && span_secs >= thresholds.min_span_secs,
        }
    }

    /// Change of the trough line over the window.
    fn change_bytes(&self) -> f64 {
        self.troughs.slope * self.span_secs
    }

    /// The last third's rate carried over the whole window, so that it meets
    /// the same bar as the whole.
    fn recent_change(&self) -> f64 {
        self.recent_slope * self.span_secs
    }

    /// Why a window is too short or too sparse to claim more (rule 5).
    fn short(&self) -> String {
        format!(
            "only {} samples over {} (need {} over {})",
            self.points,
            human_secs(self.span_secs),
            self.thresholds.min_points,
            human_secs(self.thresholds.min_span_secs)
        )
    }

    /// Troughs that rise past the bar: Leaking only with enough data (rule
    /// 5), a last third that still rises past the bar at least half as fast
    /// (rule 4), and troughs that lie on a line (rule 5).
    fn rising(&self) -> (Verdict, String) {
        let slope = self.troughs.slope;
        let rise = format!("troughs rise {}", self.thresholds.quantity.per_min(slope));
        if !self.enough {
            return (Verdict::Growing, format!("{rise}, but {}", self.short()));
        }
        if self.recent_change() < self.bar {
            let reason = format!(
                "troughs rose {} then levelled off: {} in last third",
                self.thresholds.quantity.amount(self.trough_moved),
                self.thresholds.quantity.per_min(self.recent_slope)
            );
            return (Verdict::Steady, reason);
        }
        if self.recent_slope < self.thresholds.recent_ratio * slope {
            let reason = format!(
                "{rise}, slowing to {} in last third",
                self.thresholds.quantity.per_min(self.recent_slope)
            );
            return (Verdict::Growing, reason);
        }
        if self.troughs.r2 < self.thresholds.min_r2 {
            let few_cycles = if self.cycles < 6 {
                format!("; only {} sawtooth cycles seen, watch longer", self.cycles)
            } else {
                String::new()
            };
            let reason = format!(
                "{rise}, but scattered (R²={:.2} < {:.2}){few_cycles}",
                self.troughs.r2, self.thresholds.min_r2
            );
            return (Verdict::Growing, reason);
        }
        let reason = format!(
            "{rise} (R²={:.2}), still rising in last third",
            self.troughs.r2
        );
        (Verdict::Leaking, reason)
    }

    /// Troughs that fall past the bar: Shrinking when there is enough data
    /// and the last third still falls (rule 6); Steady otherwise.
    fn falling(&self) -> (Verdict, String) {
        let fall = format!(
            "troughs fall {}",
            self.thresholds.quantity.per_min(-self.troughs.slope)
        );
        if !self.enough {
            return (Verdict::Steady, format!("{fall}, but {}", self.short()));
        }
        if self.recent_change() > -self.bar {
            let reason = format!(
                "troughs fell {} then levelled off",
                self.thresholds.quantity.amount(-self.trough_moved)
            );
            return (Verdict::Steady, reason);
        }
        (
            Verdict::Shrinking,
            format!("{fall} (R²={:.2})", self.troughs.r2),
        )
    }

    /// Troughs that move less than the bar (rule 3): Steady.
    fn flat(&self) -> (Verdict, String) {
        let reason = format!(
            "troughs flat: {} over {} (under {})",
            self.thresholds.quantity.signed(self.change_bytes()),
            human_secs(self.span_secs),
            self.thresholds.quantity.amount(self.bar)
        );
        (Verdict::Steady, reason)
    }

    /// Whether a series that would be Steady is Churn (rule 6): with enough
    /// data, it allocated at least `churn_ratio` times what it holds (a
    /// flat holder, or a sawtooth of short-lived objects that levelled off).
    fn churns(&self, allocated: f64) -> bool {
        let held = self.level_bytes.abs().max(self.thresholds.min_change_bytes);
        self.enough && allocated >= self.thresholds.churn_ratio * held
    }

    /// The Churn verdict and its reason.
    fn churn(&self, allocated: f64) -> (Verdict, String) {
        let reason = format!(
            "allocated {} while holding about {}",
            human_bytes(allocated),
            human_bytes(self.level_bytes)
        );
        (Verdict::Churn, reason)
    }
}

/// Finite samples, sorted by time.
fn clean(samples: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Value of a time-sorted series at `t`, linearly interpolated; `None`
/// outside its time range.
fn interpolate(series: &[(f64, f64)], t: f64) -> Option<f64> {
    let i = series.partition_point(|&(s, _)| s < t);
    match (i.checked_sub(1).map(|j| series[j]), series.get(i)) {
        (_, Some(&(s, v))) if s == t => Some(v),
        (Some((t0, v0)), Some(&(t1, v1))) => Some(v0 + (v1 - v0) * (t - t0) / (t1 - t0)),
        _ => None,
    }
}

/// How many slices to cut `points` samples into: a multiple of 3 so the last
/// third is whole slices, at least 2 slices a third, about 3 samples a slice
/// so that each slice's minimum means something, and no more slices than
/// sawtooth `cycles`, so that each slice holds a whole cycle and its minimum
/// is a real trough rather than wherever the slice cut the ramp.
fn window_count(thresholds: &Thresholds, points: usize, cycles: usize) -> usize {
    let per_third = (thresholds.windows / 3).max(2);
    3 * (points / 9).min(cycles / 3).clamp(2, per_third)
}

/// Sawtooth cycles in a time-sorted series: how often it falls from clearly
/// above its straight-line trend to clearly below it ("clearly": half a
/// standard deviation of the distance to the line). A series without any
/// wave, such as an exact line, has no limit to report: `usize::MAX`.
fn cycles(samples: &[(f64, f64)], fit: &Fit) -> usize {
    let residuals: Vec<f64> = samples
        .iter()
        .map(|&(t, v)| v - (fit.slope * t + fit.intercept))
        .collect();
    let spread = (residuals.iter().map(|r| r * r).sum::<f64>() / residuals.len() as f64).sqrt();
    if spread == 0.0 {
        return usize::MAX;
    }
    let (mut above, mut falls) = (false, 0);
    for r in residuals {
        if r > spread / 2.0 {
            above = true;
        } else if r < -spread / 2.0 {
            falls += usize::from(above);
            above = false;
        }
    }
    falls
}

/// The lowest sample of each of `windows` equal slices of the time span,
/// tagged with the slice's index; empty slices are skipped. `samples` is
/// time-sorted and spans more than zero seconds.
fn troughs(samples: &[(f64, f64)], windows: usize) -> Vec<(usize, (f64, f64))> {
    let t0 = samples[0].0;
    let span = samples[samples.len() - 1].0 - t0;
    let mut lows: Vec<Option<(f64, f64)>> = vec![None; windows];
    for &(t, v) in samples {
        let w = (((t - t0) / span * windows as f64) as usize).min(windows - 1);
        match lows[w] {
            Some((_, low)) if low <= v => {}
            _ => lows[w] = Some((t, v)),
        }
    }
    lows.into_iter()
        .enumerate()
        .filter_map(|(w, low)| low.map(|p| (w, p)))
        .collect()
}

#[cfg(test)]
mod tests;
