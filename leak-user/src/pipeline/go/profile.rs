//! From the Go pipeline's numbers to a [`Profile`]: stacks merged by what
//! they symbolize to, each with its verdict and bytes per call, the heap
//! retained per unit of work, the order the text report asks for.

use std::collections::HashMap;

use super::{history, GoPipeline};
use crate::{
    aggregate::{merged::MergedId, StackId, Totals},
    analysis::trend::Verdict,
    report::{Losses, Profile, Source, StackGrowth, StackProfile, Unit, WorkSummary},
};

/// Stacks symbolized per tick of the event loop (a few ms of work).
pub(crate) const SYMBOLIZE_BUDGET: usize = 2000;

/// Order of stacks in the text report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortBy {
    /// Leaking and growing stacks first, by growth rate.
    Growth,
    /// Bytes allocated and not yet freed.
    Outstanding,
    /// Bytes allocated since attach.
    Allocated,
}

/// Puts `profile`'s stacks in the order `sort` asks for (they come most
/// outstanding first).
pub(crate) fn sort_for_text(profile: &mut Profile, sort: SortBy) {
    match sort {
        SortBy::Outstanding => {}
        SortBy::Allocated => profile.stacks.sort_by(|a, b| {
            b.totals
                .allocated_bytes
                .total_cmp(&a.totals.allocated_bytes)
        }),
        SortBy::Growth => profile.stacks.sort_by(|a, b| {
            growth_rank(a)
                .cmp(&growth_rank(b))
                .then(growth_rate(b).total_cmp(&growth_rate(a)))
                .then(
                    b.totals
                        .outstanding_bytes
                        .total_cmp(&a.totals.outstanding_bytes),
                )
        }),
    }
}

/// Leaking first, then growing, then the rest.
fn growth_rank(s: &StackProfile) -> u8 {
    match s.growth.as_ref().map(|g| g.verdict) {
        Some(Verdict::Leaking) => 0,
        Some(Verdict::Growing) => 1,
        _ => 2,
    }
}

fn growth_rate(s: &StackProfile) -> f64 {
    s.growth.as_ref().map(|g| g.bytes_per_sec).unwrap_or(0.0)
}

/// What the program keeps per unit of work: the per-call slopes of the
/// stacks whose memory outlives collections. Per-request garbage also piles
/// up between (rare) GCs, but none of it survives two; until two GCs are
/// seen, every stack that is not churn counts. `None` when no stack has a
/// per-call figure yet.
pub(crate) fn retained_per_call(
    stacks: &[StackGrowth],
    outstanding: &[f64],
    gc_cycles: u64,
) -> Option<f64> {
    let mut any = false;
    let mut sum = 0.0;
    for (g, held) in stacks.iter().zip(outstanding) {
        let Some(b) = g.bytes_per_call else { continue };
        any = true;
        let keeps = gc_cycles < 2 || g.survived_2_gcs >= 0.05 * held;
        if b > 0.0 && g.verdict != Verdict::Churn && keeps {
            sum += b;
        }
    }
    any.then_some(sum)
}

impl GoPipeline {
    /// A snapshot for the reports; stacks that symbolize alike are merged.
    /// `complete`: every stack symbolized first (the final report), else
    /// only as many as one tick's budget allows.
    pub(super) fn profile(&mut self, complete: bool) -> Profile {
        self.symbolize_pending(if complete {
            usize::MAX
        } else {
            SYMBOLIZE_BUDGET
        });
        let ids = self.live_and_history();
        self.profile_of(ids)
    }

    /// The same snapshot with outstanding bytes "as of the last GC", as Go's
    /// heap profile counts them (for `--pprof`).
    pub(super) fn profile_as_of_last_gc(&mut self) -> Profile {
        self.symbolize_pending(usize::MAX);
        let ids = history::with_history(
            self.core.agg.stacks_as_of_last_gc(),
            self.core.history.values(),
        );
        let mut p = self.profile_of(ids);
        let held: Totals = p.stacks.iter().map(|s| s.totals).sum();
        p.total.outstanding_bytes = held.outstanding_bytes;
        p.total.outstanding_objects = held.outstanding_objects;
        p
    }

    /// Every stack's totals: the live samples plus what each process's
    /// history adds.
    fn live_and_history(&self) -> Vec<(StackId, Totals)> {
        let live = self.core.agg.stacks().map(|(id, t)| (id, *t)).collect();
        history::with_history(live, self.core.history.values())
    }

    /// What the processes' histories add (outstanding only), if any has one.
    fn history_totals(&self) -> Option<Totals> {
        (!self.core.history.is_empty()).then(|| {
            self.core
                .history
                .values()
                .flat_map(|h| h.part().values().copied())
                .sum()
        })
    }

    /// Symbolizes up to `budget` stacks not yet symbolized, oldest first.
    pub(super) fn symbolize_pending(&mut self, budget: usize) {
        let (agg, symbols) = (&self.core.agg, &mut self.symbols);
        self.merged.catch_up(agg.stack_count(), budget, |id| {
            symbols.logical_stack(agg.stack(id))
        });
    }

    fn profile_of(&mut self, ids: Vec<(StackId, Totals)>) -> Profile {
        let survived = self
            .merged
            .sum_per_stack(&self.core.agg.survived_per_stack(2));
        let at_exit = self
            .merged
            .sum_per_stack(&self.core.agg.held_at_exit_per_stack());
        let gc_cycles = self.core.procs.gc_cycles();
        let stacks: Vec<StackProfile> = self
            .merged
            .totals(ids)
            .into_iter()
            .map(|(m, totals)| StackProfile {
                heap: None,
                oldest_secs: None,
                held_at_exit: at_exit.get(&m).copied().unwrap_or(0.0),
                frames: self.merged.frames(m).clone(),
                totals,
                growth: self.stack_growth(m, &survived),
            })
            .collect();
        let with_growth: Vec<(StackGrowth, f64)> = stacks
            .iter()
            .filter_map(|s| Some((s.growth.clone()?, s.totals.outstanding_bytes)))
            .collect();
        let (growths, held): (Vec<StackGrowth>, Vec<f64>) = with_growth.into_iter().unzip();
        let work = self.options.work.clone().map(|function| WorkSummary {
            function,
            calls: self.growth.calls(),
            bytes_per_call: retained_per_call(&growths, &held, gc_cycles),
        });
        let history = self.history_totals();
        let history_bytes = history.map(|t| t.outstanding_bytes);
        let mut total = self.core.agg.total();
        if let Some(h) = history {
            total += h;
        }
        let mut profile = Profile {
            binary: self.program.path.clone(),
            source: Source::GoSampler {
                go_version: self.program.version.clone(),
                rate: self.core.procs.rate(),
                gc_cycles,
                // History is "as of the last GC" too.
                in_use_at_last_gc: match (self.core.agg.in_use_at_last_gc(), history_bytes) {
                    (Some(live), h) => Some(live + h.unwrap_or(0.0)),
                    (None, Some(h)) if h > 0.0 => Some(h),
                    (None, _) => None,
                },
                history_bytes,
            },
            unit: Unit::Bytes,
            pids: self.core.procs.pids(),
            elapsed: self.started.elapsed(),
            samples: self.core.agg.samples(),
            frees: self.core.agg.frees(),
            total,
            previous_outstanding: self.previous_outstanding,
            stacks,
            losses: self.losses(),
            work,
            goroutines: self.goroutines.report(self.core.procs.pids()),
        };
        profile.sort_by_outstanding();
        profile
    }

    /// One merged stack's trend, bytes per call and bytes that survived.
    fn stack_growth(&self, m: MergedId, survived: &HashMap<MergedId, f64>) -> Option<StackGrowth> {
        let trend = self.growth.assess(&m)?;
        let per_call = self
            .growth
            .series(&m)
            .and_then(|s| self.growth.per_call(&s.current))
            .map(|fit| fit.slope);
        Some(StackGrowth {
            verdict: trend.verdict,
            reason: trend.reason,
            bytes_per_sec: trend.slope,
            bytes_per_call: per_call,
            survived_2_gcs: survived.get(&m).copied().unwrap_or(0.0),
        })
    }

    /// What was lost, from the kernel's counters and our own.
    pub(super) fn losses(&self) -> Losses {
        let mut l = self.kernel_losses();
        l.stacks_failed += self.core.buckets.missing();
        l.samples_without_process = self.core.samples_without_process;
        l
    }

    /// Records every stack's totals (and the work counter) for the growth
    /// verdicts. Outstanding bytes are taken "as of the last GC": garbage
    /// allocated since the last collection is left out, so a stack that only
    /// churns does not look like it grows when collections space out as the
    /// heap grows.
    pub(super) fn record_growth(&mut self) {
        self.symbolize_pending(SYMBOLIZE_BUDGET);
        let t = self.started.elapsed().as_secs_f64();
        let now: HashMap<MergedId, f64> = self
            .merged
            .totals(self.live_and_history())
            .into_iter()
            .map(|(m, t)| (m, t.outstanding_bytes))
            .collect();
        let points: Vec<(MergedId, Totals, f64)> = self
            .merged
            .totals(history::with_history(
                self.core.agg.stacks_as_of_last_gc(),
                self.core.history.values(),
            ))
            .into_iter()
            .map(|(m, t)| (m, t, now.get(&m).copied().unwrap_or(0.0)))
            .collect();
        self.growth.record(t, &points, self.core.procs.gc_cycles());
        if let Some(calls) = self.work_calls() {
            self.growth.record_work(t, calls);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{example, Frame};

    fn growth(verdict: Verdict, per_call: Option<f64>, survived: f64) -> StackGrowth {
        StackGrowth {
            verdict,
            reason: String::new(),
            bytes_per_sec: 0.0,
            bytes_per_call: per_call,
            survived_2_gcs: survived,
        }
    }

    #[test]
    fn kept_per_call_counts_what_survives_collections() {
        let leak = growth(Verdict::Leaking, Some(10240.0), 9.0e6);
        // Per-request garbage: rises with calls between GCs, never survives.
        let garbage = growth(Verdict::Growing, Some(1500.0), 0.0);
        let churn = growth(Verdict::Churn, Some(800.0), 1.0e6);
        let shrinking = growth(Verdict::Shrinking, Some(-50.0), 1.0e6);
        let stacks = [leak.clone(), garbage.clone(), churn, shrinking];
        let held = [10.0e6, 2.0e6, 1.0e6, 1.0e6];
        assert_eq!(retained_per_call(&stacks, &held, 5), Some(10240.0));
        // Before two GCs nothing is known to survive: all but churn count.
        assert_eq!(retained_per_call(&stacks, &held, 1), Some(11740.0));
        // No per-call figure anywhere yet: none overall.
        assert_eq!(
            retained_per_call(&[growth(Verdict::Steady, None, 0.0)], &[1.0], 5),
            None
        );
    }

    #[test]
    fn growth_order_puts_leaks_first() {
        let stack = |name: &str, held: f64, g: Option<StackGrowth>| StackProfile {
            heap: None,
            oldest_secs: None,
            held_at_exit: 0.0,
            frames: vec![Frame::named(name)].into(),
            totals: Totals {
                outstanding_bytes: held,
                allocated_bytes: held,
                ..Totals::default()
            },
            growth: g,
        };
        let mut fast = growth(Verdict::Leaking, None, 0.0);
        fast.bytes_per_sec = 2000.0;
        let mut slow = growth(Verdict::Leaking, None, 0.0);
        slow.bytes_per_sec = 100.0;
        let mut p = example(vec![
            stack("cache", 9e9, Some(growth(Verdict::Steady, None, 0.0))),
            stack("slow", 1e3, Some(slow)),
            stack("unknown", 5e9, None),
            stack("fast", 1e6, Some(fast)),
        ]);
        sort_for_text(&mut p, SortBy::Growth);
        let order: Vec<&str> = p.stacks.iter().map(|s| &*s.frames[0].function).collect();
        assert_eq!(order, ["fast", "slow", "cache", "unknown"]);
        sort_for_text(&mut p, SortBy::Allocated);
        assert_eq!(&*p.stacks[0].frames[0].function, "cache");
    }
}
