//! What a traced Go process held before leak attached: its runtime's own
//! heap profile records ([`crate::go::records`]), re-read after each GC,
//! less what leak has seen live of the same stacks, so each stack has one
//! number: history plus live.

use std::{collections::HashMap, rc::Rc};

use crate::{
    aggregate::{sampled::Aggregator, StackId, Totals},
    go::{
        records::{self, HeapRecords, Read},
        GoProcess, Program,
    },
};

/// What one traced process held before leak attached, from its runtime's
/// records: read at first sight, read again after each GC publishes new
/// numbers. The part of a stack leak has not seen live (objects sampled
/// before attach, still in use as of the last GC) is the records' in-use
/// less what the live samples of the same stack hold as of that GC, so a
/// stack has one number: history plus live.
pub(crate) struct ProcessHistory {
    process: GoProcess,
    records: HeapRecords,
    /// The rate the records were first read at. If it changes (leak or
    /// someone else wrote `MemProfileRate`), later reads would scale old
    /// samples with the new rate, as pprof does: the history is kept as
    /// last read instead.
    rate: i64,
    frozen: bool,
    /// Per stack, what the live samples do not account for (outstanding
    /// bytes and objects only).
    part: HashMap<StackId, Totals>,
    /// GC cycles of the process (as leak counts them) at the last read.
    read_at_gc: u64,
    /// GC cycles at the previous call of `refresh`.
    last_seen_gc: u64,
}

impl ProcessHistory {
    /// Reads the history of process `pid`; `Err` says in one line why
    /// there is none.
    pub(crate) fn open(
        program: &Rc<Program>,
        pid: u32,
        agg: &mut Aggregator,
    ) -> Result<Self, String> {
        let process = GoProcess::open(Rc::clone(program), pid).map_err(|e| e.to_string())?;
        let records = HeapRecords::locate(&process).map_err(|e| e.to_string())?;
        let read = records.read(&process).map_err(|e| e.to_string())?;
        if let Some(why) = records::why_empty(&read) {
            return Err(why);
        }
        let mut h = Self {
            process,
            records,
            rate: read.rate,
            frozen: false,
            part: HashMap::new(),
            read_at_gc: 0,
            last_seen_gc: 0,
        };
        h.take(&read, &HashMap::new(), agg);
        Ok(h)
    }

    /// Reads the records again if the process has finished a GC since the
    /// last read and its rate is the one they were first scaled with. The
    /// runtime publishes a cycle's frees only once its sweep is done, while
    /// leak sees each free as it happens: unless `now`, the read waits until
    /// the GC count has held still for one call (a second), so both views
    /// are of the same finished cycle.
    pub(crate) fn refresh(
        &mut self,
        rate_now: u64,
        gc_cycles: u64,
        now: bool,
        agg: &mut Aggregator,
    ) {
        let settled = now || gc_cycles == self.last_seen_gc;
        self.last_seen_gc = gc_cycles;
        if self.frozen || gc_cycles == self.read_at_gc || !settled {
            return;
        }
        if rate_now as i64 != self.rate {
            self.frozen = true;
            return;
        }
        match self.records.read(&self.process) {
            Ok(read) if read.rate == self.rate => {
                let seen = agg.held_at_last_gc_of(self.process.pid());
                self.take(&read, &seen, agg);
                self.read_at_gc = gc_cycles;
            }
            // Gone, or the rate moved: keep what was read.
            _ => self.frozen = true,
        }
    }

    fn take(&mut self, read: &Read, seen: &HashMap<StackId, (f64, f64)>, agg: &mut Aggregator) {
        self.part = unseen_part(read, self.process.bias(), seen, agg);
    }

    /// Per stack, what the history adds to the live samples.
    pub(crate) fn part(&self) -> &HashMap<StackId, Totals> {
        &self.part
    }

    /// Bytes the history adds, over all stacks.
    pub(crate) fn held(&self) -> f64 {
        self.part.values().map(|t| t.outstanding_bytes).sum()
    }
}

/// Per stack, what `read`'s records hold (pcs less `bias`, interned in
/// `agg`) less what leak's live samples hold as of the same GC (`seen`):
/// the objects sampled before leak attached that are still in use.
pub(crate) fn unseen_part(
    read: &Read,
    bias: u64,
    seen: &HashMap<StackId, (f64, f64)>,
    agg: &mut Aggregator,
) -> HashMap<StackId, Totals> {
    // Outstanding only: what was allocated is counted since attach.
    let mut part: HashMap<StackId, Totals> = records::per_stack(read, bias, |pcs| agg.intern(pcs))
        .into_iter()
        .map(|(id, t)| (id, t.outstanding_only()))
        .collect();
    for (id, (bytes, objects)) in seen {
        if let Some(t) = part.get_mut(id) {
            t.sub_outstanding(*bytes, *objects);
        }
    }
    part.retain(|_, t| t.outstanding_bytes > 0.0);
    part
}

/// `live` (stack totals from the samples) with each process's history
/// added: stacks only the history knows are appended.
pub(crate) fn with_history<'a>(
    live: Vec<(StackId, Totals)>,
    histories: impl Iterator<Item = &'a ProcessHistory>,
) -> Vec<(StackId, Totals)> {
    with_parts(live, histories.map(ProcessHistory::part))
}

/// `live` with each of `parts` added, stack by stack.
fn with_parts<'a>(
    mut live: Vec<(StackId, Totals)>,
    parts: impl Iterator<Item = &'a HashMap<StackId, Totals>>,
) -> Vec<(StackId, Totals)> {
    let mut extra: HashMap<StackId, Totals> = HashMap::new();
    for part in parts {
        for (id, t) in part {
            *extra.entry(*id).or_default() += *t;
        }
    }
    for (id, t) in live.iter_mut() {
        if let Some(h) = extra.remove(id) {
            t.outstanding_bytes += h.outstanding_bytes;
            t.outstanding_objects += h.outstanding_objects;
        }
    }
    live.extend(extra);
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::go::records::tests::read_of;

    #[test]
    fn history_is_what_the_live_samples_do_not_account_for() {
        let mut agg = Aggregator::new();
        // Two sizes of one stack (PIE bias 0x1000), and a stack all freed.
        let read = read_of(&[
            (10_000, &[0x1100, 0x1200], 5, 1),
            (20_000, &[0x1100, 0x1200], 1, 0),
            (64, &[0x1300], 10, 10),
        ]);
        let stack = agg.intern(&[0x100, 0x200]);
        let none = HashMap::new();
        let part = unseen_part(&read, 0x1000, &none, &mut agg);
        assert_eq!(part.len(), 1, "the freed stack adds nothing");
        assert_eq!(part[&stack].outstanding_bytes, 60_000.0);
        assert_eq!(part[&stack].outstanding_objects, 5.0);
        assert_eq!(
            part[&stack].allocated_bytes, 0.0,
            "allocated counts since attach"
        );
        // Leak saw 2 of those objects live: they are not history.
        let seen = HashMap::from([(stack, (20_000.0, 2.0))]);
        let part = unseen_part(&read, 0x1000, &seen, &mut agg);
        assert_eq!(part[&stack].outstanding_bytes, 40_000.0);
        // More seen than recorded (frees not yet published): never below 0.
        let seen = HashMap::from([(stack, (90_000.0, 9.0))]);
        assert!(unseen_part(&read, 0x1000, &seen, &mut agg).is_empty());
    }

    #[test]
    fn one_stack_one_number() {
        let t = |held: f64, allocated: f64| Totals {
            outstanding_bytes: held,
            outstanding_objects: held / 100.0,
            allocated_bytes: allocated,
            allocated_objects: allocated / 100.0,
        };
        let live = vec![(StackId(0), t(1000.0, 5000.0)), (StackId(1), t(0.0, 100.0))];
        let extra: HashMap<StackId, Totals> =
            HashMap::from([(StackId(0), t(20_000.0, 0.0)), (StackId(7), t(300.0, 0.0))]);
        let mut out = with_parts(live, [&extra].into_iter());
        out.sort_by_key(|(id, _)| *id);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].1.outstanding_bytes, 21_000.0);
        assert_eq!(out[0].1.allocated_bytes, 5000.0);
        assert_eq!(out[1].1.outstanding_bytes, 0.0);
        assert_eq!((out[2].0, out[2].1.outstanding_bytes), (StackId(7), 300.0));
    }
}
