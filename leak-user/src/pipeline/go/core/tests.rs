//! The Go pipeline's core on fake records and fake processes: no kernel,
//! no binary, no `/proc`.

use std::collections::HashMap;

use leak_common::{AllocEvent, Event, EventKind, GO_MAX_FRAMES};

use super::*;
use crate::process::memory::FakeMemory;

/// Link-time sites of the fake program.
const SITES: ProbeSites = ProbeSites {
    alloc: 0x41_2345,
    start: 0x40_1000,
    rate: Some(0x60_0000),
};

/// Processes as the fake system knows them: start time, load bias and the
/// rate in their memory.
#[derive(Default)]
struct FakeHost {
    procs: HashMap<u32, (u64, u64, i64)>,
}

impl Host for FakeHost {
    fn start_time(&self, pid: u32) -> Option<u64> {
        self.procs.get(&pid).map(|p| p.0)
    }

    fn load_bias(&self, pid: u32) -> Option<u64> {
        self.procs.get(&pid).map(|p| p.1)
    }

    fn memory(&self, pid: u32) -> Option<Box<dyn MemoryMut>> {
        let &(_, bias, rate) = self.procs.get(&pid)?;
        let rate_at = SITES.rate.unwrap() + bias;
        Some(Box::new(FakeMemory::with_i64s(&[(rate_at, rate)])))
    }

    fn history(&self, _pid: u32, _agg: &mut Aggregator) -> Result<ProcessHistory, String> {
        Err("no records in this test".into())
    }
}

fn core_with(procs: &[(u32, u64, u64, i64)], launched: Option<u32>) -> Core {
    let host = FakeHost {
        procs: procs
            .iter()
            .map(|&(pid, start, bias, rate)| (pid, (start, bias, rate)))
            .collect(),
    };
    Core::new(SITES, Box::new(host), launched)
}

/// A sample of `size` bytes at `addr` in `bucket`, seen at the alloc probe
/// of a process loaded at `bias`, carrying `stack` (link-time pcs) if any.
fn alloc(tgid: u32, bias: u64, addr: u64, size: u64, bucket: u64, stack: &[u64]) -> Record {
    let mut ev = Box::new(AllocEvent {
        kind: EventKind::Alloc as u32,
        tgid,
        timestamp_ns: 1,
        addr,
        size,
        bucket,
        frames: stack.len() as u32,
        flags: if stack.is_empty() { 0 } else { ALLOC_HAS_STACK },
        ip: SITES.alloc + bias + 1,
        stack: [0; GO_MAX_FRAMES],
    });
    for (i, pc) in stack.iter().enumerate() {
        ev.stack[i] = pc + bias;
    }
    Record::Alloc(ev)
}

fn event(kind: EventKind, tgid: u32, addr: u64) -> Event {
    Event {
        kind: kind as u32,
        tgid,
        timestamp_ns: 2,
        addr,
        size: 0,
    }
}

#[test]
fn a_sample_is_held_until_its_free() {
    // Rate 1: every byte is a sample, so the numbers are exact.
    let bias = 0x5555_0000_0000;
    let mut core = core_with(&[(7, 100, bias, 1)], None);
    core.handle(alloc(
        7,
        bias,
        0xc000_0000,
        4096,
        0xb1,
        &[0x40_2000, 0x40_3000],
    ));
    core.handle(alloc(7, bias, 0xc000_2000, 4096, 0xb1, &[]));
    let t = core.agg.total();
    assert_eq!((t.outstanding_bytes, t.outstanding_objects), (8192.0, 2.0));
    // The bucket's stack came once, relocated to link-time addresses; the
    // second sample named the bucket and got the same stack.
    assert_eq!(core.agg.stack_count(), 1);
    let (id, _) = core.agg.stacks().next().unwrap();
    assert_eq!(core.agg.stack(id), &[0x40_2000, 0x40_3000]);
    core.handle(Record::Free(event(EventKind::Free, 7, 0xc000_0000)));
    let t = core.agg.total();
    assert_eq!((t.outstanding_bytes, t.allocated_bytes), (4096.0, 8192.0));
    assert_eq!(core.samples_without_process, 0);
    // Placed with the bias from /proc and the rate from its memory.
    let p = core.procs.get_mut(7).unwrap();
    assert_eq!((p.bias, p.start_time, p.rates.current()), (bias, 100, 1));
    assert!(core.notes[0].contains("no history"), "{:?}", core.notes);
}

#[test]
fn a_short_job_gone_before_placement_keeps_its_samples() {
    // Nothing in /proc for pid 9: its bias comes from the probe's
    // instruction pointer, its rate from the processes already placed.
    let mut core = core_with(&[(7, 100, 0, 1)], None);
    core.handle(alloc(7, 0, 0xc000_0000, 64, 0xa, &[0x40_2000]));
    let bias = 0x7f00_0000_0000;
    core.handle(alloc(9, bias, 0xc100_0000, 1000, 0xb, &[0x40_4000]));
    assert_eq!(core.samples_without_process, 0);
    let p = core.procs.get_mut(9).unwrap();
    assert_eq!((p.bias, p.rates.current()), (bias, 1));
    assert_eq!(core.agg.total().outstanding_bytes, 1064.0);
}

#[test]
fn a_gc_of_an_unplaceable_process_is_not_counted_and_samples_without_one_are() {
    let mut core = core_with(&[], None);
    // No bias from /proc and no instruction pointer: it cannot be placed.
    let Record::Alloc(mut ev) = alloc(3, 0, 0xc000_0000, 64, 0xa, &[0x40_2000]) else {
        unreachable!()
    };
    ev.ip = 0;
    core.handle(Record::Alloc(ev));
    core.handle(Record::GcCycle(event(EventKind::GcCycle, 3, 0)));
    assert_eq!(core.samples_without_process, 1);
    assert_eq!(core.agg.total().allocated_bytes, 0.0);
    assert!(!core.procs.contains(3));
}

#[test]
fn gc_cycles_are_counted_per_process() {
    let mut core = core_with(&[(7, 100, 0, 512 * 1024), (8, 100, 0, 512 * 1024)], None);
    for _ in 0..3 {
        core.handle(Record::GcCycle(event(EventKind::GcCycle, 7, 0)));
    }
    core.handle(Record::GcCycle(event(EventKind::GcCycle, 8, 0)));
    assert_eq!(core.procs.get_mut(7).unwrap().gc_cycles, 3);
    assert_eq!(core.procs.gc_cycles(), 4);
    assert_eq!(core.agg.gc_cycles(7), 3);
}

#[test]
fn a_start_queues_a_rate_check_or_hands_back_the_launched_program() {
    let bias = 0x5000_0000;
    let mut core = core_with(&[(7, 100, bias, 0), (8, 100, bias, 0)], Some(8));
    let start = |tgid| Record::Start(event(EventKind::Start, tgid, SITES.start + bias));
    assert_eq!(core.handle(start(7)), None);
    assert_eq!(core.started_pids, [7]);
    // The program leak launched waits, stopped, for its rate: the caller
    // sets it and lets it go.
    assert_eq!(core.handle(start(8)), Some(8));
    assert_eq!(core.started_pids, [7]);
    assert_eq!(core.procs.get_mut(8).unwrap().bias, bias);
    // Sampling off in both: the rate read from memory is 0.
    assert_eq!(core.procs.get_mut(7).unwrap().rates.current(), 0);
}

#[test]
fn a_process_started_after_attach_has_no_history_to_read() {
    let mut core = core_with(&[(7, 100, 0, 1), (8, 300, 0, 1)], None);
    core.attached_at = Some(200);
    core.place(7, None);
    core.place(8, None);
    // Only pid 7 ran before attach: only its records were asked for.
    assert_eq!(core.notes.len(), 1);
    assert!(core.notes[0].starts_with("leak: pid 7: no history"));
}

#[test]
fn a_start_under_a_reused_pid_ends_the_process_that_had_it() {
    // Pid 7 was placed when another process had it (started at 50); the
    // process running as 7 now started at 100, and its start is seen.
    let mut core = core_with(&[(7, 100, 0, 1)], None);
    core.procs.insert(7, Process::new(0, 50, None, 1));
    core.handle(alloc(7, 0, 0xc000_0000, 4096, 0xb1, &[0x40_2000]));
    core.handle(Record::Start(event(EventKind::Start, 7, SITES.start)));
    // What the first held is held at its exit, its bucket forgotten here
    // and handed over to be forgotten in the kernel.
    assert_eq!(core.agg.total().outstanding_bytes, 0.0);
    assert_eq!(
        core.agg.held_at_exit_per_stack().iter().sum::<f64>(),
        4096.0
    );
    assert_eq!(core.forgotten_buckets, [(7, 0xb1)]);
    // The new one is placed with its own start, and its samples are its.
    assert_eq!(core.procs.get(7).unwrap().start_time, 100);
    core.handle(alloc(7, 0, 0xc000_0000, 1000, 0xb1, &[0x40_3000]));
    assert_eq!(core.agg.total().outstanding_bytes, 1000.0);
    // A start of the process already known changes nothing.
    core.handle(Record::Start(event(EventKind::Start, 7, SITES.start)));
    assert_eq!(core.agg.total().outstanding_bytes, 1000.0);
    assert_eq!(core.forgotten_buckets.len(), 1);
}
