use std::{cell::RefCell, rc::Rc};

use super::*;
use crate::process::memory::FakeMemory;

const RATE_AT: u64 = 0x5000;

fn process(rate_in_memory: i64, start_time: u64) -> Process {
    let mem = FakeMemory::with_i64s(&[(RATE_AT, rate_in_memory)]);
    Process::new(0, start_time, Some(Box::new(mem)), rate_in_memory as u64)
}

fn policy(requested: Option<u64>, read_only: bool) -> RatePolicy {
    RatePolicy {
        addr: Some(RATE_AT),
        requested,
        read_only,
        through_one: true,
        keep: false,
        resume_after_one: None,
    }
}

/// A guard that keeps what it is told.
#[derive(Clone, Default)]
struct Told(Rc<RefCell<Vec<Message>>>);

impl Guard for Told {
    fn send(&mut self, message: &Message) {
        self.0.borrow_mut().push(message.clone());
    }
}

impl Told {
    fn lines(&self) -> Vec<String> {
        self.0.borrow().iter().map(Message::to_string).collect()
    }
}

/// Every pid runs, started at `start`.
fn all_started_at(start: u64) -> impl Fn(u32) -> Option<u64> {
    move |_| Some(start)
}

fn set_rate_in(p: &mut Processes, pid: u32, v: i64) {
    p.get_mut(pid)
        .unwrap()
        .memory
        .as_deref()
        .unwrap()
        .write_i64(RATE_AT, v)
        .unwrap();
}

fn rate_in(p: &mut Processes, pid: u32) -> i64 {
    p.get_mut(pid)
        .unwrap()
        .memory
        .as_deref()
        .unwrap()
        .read_i64(RATE_AT)
        .unwrap()
}

#[test]
fn exits_are_reported_once_and_kept_in_the_report() {
    let mut ps = Processes::default();
    ps.insert(10, process(512 * 1024, 100));
    ps.insert(11, process(512 * 1024, 200));
    assert_eq!(ps.update(&[(10, 100), (11, 200)]), ScanResult::default());
    assert!(!ps.all_exited());
    assert_eq!(ps.update(&[(11, 200)]).exited, vec![10]);
    assert_eq!(ps.update(&[(11, 200)]).exited, Vec::<u32>::new());
    assert_eq!(ps.update(&[]).exited, vec![11]);
    assert!(ps.all_exited());
    assert_eq!(
        ps.pids(),
        vec![10, 11],
        "exited processes stay in the report"
    );
}

#[test]
fn a_reused_pid_is_a_new_process() {
    let mut ps = Processes::default();
    ps.insert(10, process(512 * 1024, 100));
    ps.get_mut(10).unwrap().gc_cycles = 5;
    // Same pid, another start time: the old one exited.
    assert_eq!(ps.update(&[(10, 300)]).exited, vec![10]);
    assert!(!ps.contains(10), "placed afresh on next sight");
    ps.insert(10, process(512 * 1024, 300));
    assert_eq!(ps.gc_cycles(), 0);
    assert_eq!(ps.update(&[(10, 300)]), ScanResult::default());
}

#[test]
fn sampling_off_is_turned_on_and_read_only_refuses() {
    let mut ps = Processes::default();
    ps.insert(10, process(0, 1));
    ps.check_rate(10, &policy(None, false), "/srv/app").unwrap();
    assert_eq!(rate_in(&mut ps, 10), sampling::DEFAULT_RATE as i64);
    assert_eq!(ps.rate(), sampling::DEFAULT_RATE);
    // The samples before the write were taken at rate 0, then 1.
    let rates = &ps.get_mut(10).unwrap().rates;
    assert_eq!(rates.at(0), 0);

    let mut ro = Processes::default();
    ro.insert(11, process(0, 1));
    let e = ro
        .check_rate(11, &policy(None, true), "/srv/app")
        .unwrap_err();
    assert!(
        e.to_string().contains("--read-only forbids turning it on"),
        "{e}"
    );
    assert_eq!(rate_in(&mut ro, 11), 0, "nothing written");
}

#[test]
fn rate_is_changed_only_on_request_and_checked_a_few_times() {
    let mut ps = Processes::default();
    ps.insert(10, process(512 * 1024, 1));
    ps.check_rate(10, &policy(None, false), "/srv/app").unwrap();
    assert_eq!(rate_in(&mut ps, 10), 512 * 1024, "left alone");
    ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    assert_eq!(rate_in(&mut ps, 10), 4096);
    assert_eq!(ps.rate(), 4096);
    // The third check is the last; after it nothing is read or written.
    ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    ps.check_rate(10, &policy(Some(8192), false), "/srv/app")
        .unwrap();
    assert_eq!(rate_in(&mut ps, 10), 4096);
    // An implausible value is never overwritten.
    ps.insert(12, process(-7, 1));
    ps.check_rate(12, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    assert_eq!(rate_in(&mut ps, 12), -7);
}

#[test]
fn what_leak_wrote_is_put_back_and_the_guard_told_first() {
    let told = Told::default();
    let mut ps = Processes::default();
    ps.guard_with(Box::new(told.clone()));
    ps.insert(10, process(0, 7));
    ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    assert_eq!(rate_in(&mut ps, 10), 4096);
    // Before the write, both values it may leave; after, just the rate.
    assert_eq!(
        told.lines(),
        ["set 10 7 0x5000 0 1,4096", "set 10 7 0x5000 0 4096"]
    );
    ps.restore_rates(all_started_at(7));
    assert_eq!(rate_in(&mut ps, 10), 0);
    assert_eq!(told.lines()[2..], ["forget 10", "done"]);
    // Restored once: a second call finds nothing to do.
    set_rate_in(&mut ps, 10, 4096);
    ps.restore_rates(all_started_at(7));
    assert_eq!(rate_in(&mut ps, 10), 4096);
    assert_eq!(told.lines().len(), 4, "the guard is told once");
}

#[test]
fn the_guard_forgets_a_process_that_exited() {
    let told = Told::default();
    let mut ps = Processes::default();
    ps.guard_with(Box::new(told.clone()));
    ps.insert(10, process(0, 7));
    ps.insert(11, process(0, 7));
    ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    ps.check_rate(11, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    ps.update(&[(10, 7), (11, 7)]);
    assert_eq!(told.lines().len(), 4, "two writes each, nothing forgotten");
    ps.update(&[(11, 7)]);
    ps.update(&[(11, 7)]);
    assert_eq!(told.lines()[4..], ["forget 10"]);
    ps.restore_rates(all_started_at(7));
    assert_eq!(told.lines()[5..], ["forget 11", "done"]);
}

#[test]
fn a_rate_changed_since_or_another_process_is_left_alone() {
    let mut ps = Processes::default();
    ps.insert(10, process(524288, 7));
    ps.insert(11, process(0, 7));
    ps.insert(12, process(524288, 7));
    for pid in [10, 11, 12] {
        ps.check_rate(pid, &policy(Some(4096), false), "/srv/app")
            .unwrap();
        assert_eq!(rate_in(&mut ps, pid), 4096);
    }
    set_rate_in(&mut ps, 10, 8192); // the program, or a person
    ps.restore_rates(|pid| Some(if pid == 11 { 8 } else { 7 }));
    assert_eq!(rate_in(&mut ps, 10), 8192, "changed since: left alone");
    assert_eq!(rate_in(&mut ps, 11), 4096, "not the process leak wrote to");
    assert_eq!(rate_in(&mut ps, 12), 524288, "put back");
}

#[test]
fn nothing_written_nothing_restored() {
    let told = Told::default();
    let mut ps = Processes::default();
    ps.guard_with(Box::new(told.clone()));
    ps.insert(10, process(524288, 7));
    ps.check_rate(10, &policy(None, false), "/srv/app").unwrap();
    set_rate_in(&mut ps, 10, 1000);
    ps.restore_rates(all_started_at(7));
    assert_eq!(rate_in(&mut ps, 10), 1000);
    assert_eq!(told.lines(), ["done"]);
    // An exited process is not touched either.
    let mut gone = Processes::default();
    gone.insert(11, process(0, 7));
    gone.check_rate(11, &policy(None, false), "/srv/app")
        .unwrap();
    gone.restore_rates(|_| None);
    assert_eq!(rate_in(&mut gone, 11), sampling::DEFAULT_RATE as i64);
}

#[test]
fn the_value_set_between_two_writes_is_the_one_put_back() {
    // Caught before the runtime's start-up turned sampling off: leak
    // writes over 524288, the runtime writes 0, leak writes again.
    let mut ps = Processes::default();
    ps.insert(10, process(524288, 7));
    ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    set_rate_in(&mut ps, 10, 0);
    ps.check_rate(10, &policy(Some(4096), false), "/srv/app")
        .unwrap();
    assert_eq!(rate_in(&mut ps, 10), 4096);
    ps.restore_rates(all_started_at(7));
    assert_eq!(rate_in(&mut ps, 10), 0);
}
