use std::cell::{Cell, RefCell};

use super::*;
use crate::{go::table::rows, process::memory::FakeMemory};

const ALLGLEN: u64 = 0x9000;
const ALLGPTR: u64 = 0x9008;
const ARRAY: u64 = 0xa000;
const TEXT: std::ops::Range<u64> = 0x40_0000..0x50_0000;
const AT: Location = Location {
    allglen: ALLGLEN,
    allgptr: ALLGPTR,
};

/// A `g` to lay out: its address, status, stack and saved registers.
#[derive(Clone, Copy)]
struct G {
    addr: u64,
    status: u32,
    goid: u64,
    stack: (u64, u64),
    sched: (u64, u64, u64),
}

impl G {
    /// A goroutine parked with `sp` at the bottom 0x100 of a 0x1000-byte
    /// stack at `lo`.
    fn parked(addr: u64, goid: u64, lo: u64, pc: u64, bp: u64) -> Self {
        G {
            addr,
            status: 4,
            goid,
            stack: (lo, lo + 0x1000),
            sched: (lo + 0x100, pc, bp),
        }
    }

    fn bytes(&self, layout: &GoroutineLayout) -> Vec<u8> {
        let l = layout.g;
        let mut b = vec![0u8; l.size as usize];
        let mut put = |off: u32, v: u64| b[off as usize..][..8].copy_from_slice(&v.to_le_bytes());
        put(l.stack_lo, self.stack.0);
        put(l.stack_hi, self.stack.1);
        put(l.sched + l.gobuf.sp, self.sched.0);
        put(l.sched + l.gobuf.pc, self.sched.1);
        put(l.sched + l.gobuf.bp, self.sched.2);
        put(l.goid, self.goid);
        put(l.waitsince, 77);
        put(l.gopc, 0x40_0100);
        put(l.startpc, 0x40_0200);
        if let Some(p) = l.parent_goid {
            put(p, 1);
        }
        b[l.atomicstatus as usize..][..4].copy_from_slice(&self.status.to_le_bytes());
        b[l.waitreason as usize] = 7;
        b
    }
}

/// Frame records `(bp, [saved bp, return address])` on a stack.
fn frames(records: &[(u64, u64, u64)]) -> Vec<(u64, Vec<u8>)> {
    records
        .iter()
        .map(|&(bp, next, ret)| {
            let mut b = next.to_le_bytes().to_vec();
            b.extend(ret.to_le_bytes());
            (bp, b)
        })
        .collect()
}

fn memory(layout: &GoroutineLayout, gs: &[G], extra: Vec<(u64, Vec<u8>)>) -> FakeMemory {
    let mut ranges = vec![
        (ALLGLEN, (gs.len() as u64).to_le_bytes().to_vec()),
        (ALLGPTR, ARRAY.to_le_bytes().to_vec()),
        (
            ARRAY,
            gs.iter().flat_map(|g| g.addr.to_le_bytes()).collect(),
        ),
    ];
    ranges.extend(gs.iter().map(|g| (g.addr, g.bytes(layout))));
    ranges.extend(extra);
    FakeMemory(RefCell::new(ranges))
}

fn read_all(layout: &GoroutineLayout, mem: &dyn Memory) -> Result<Snapshot, ReadError> {
    read(mem, layout, AT, &|pc| TEXT.contains(&pc))
}

/// A parked goroutine's stack is its saved pc then the return addresses up
/// the frame-pointer chain; dead gs are skipped, running ones have no
/// stack: in every row's layout.
#[test]
fn walks_parked_goroutines_in_every_row() {
    for row in rows() {
        let layout = &row.goroutines;
        let lo = 0xc000_0000;
        let parked = G::parked(0x1_0000, 7, lo, 0x40_1000, lo + 0x180);
        let dead = G {
            status: 6,
            ..G::parked(0x1_1000, 0, 0, 0, 0)
        };
        let running = G {
            status: 2,
            ..G::parked(0x1_2000, 9, lo + 0x1000, 0x40_5000, 0)
        };
        // A scanned parked goroutine: the scan bit is not a status.
        let scanned = G {
            status: 0x1004,
            ..G::parked(0x1_3000, 11, lo + 0x2000, 0x40_1000, 0)
        };
        let chain = frames(&[
            (lo + 0x180, lo + 0x1c0, 0x40_2000),
            (lo + 0x1c0, lo + 0x1f0, 0x40_3000),
            (lo + 0x1f0, 0, 0x40_4001),
        ]);
        let mem = memory(layout, &[parked, dead, running, scanned], chain);
        let snap = read_all(layout, &mem).unwrap_or_else(|e| panic!("{}: {e}", row.since));
        assert_eq!((snap.slots, snap.dead), (4, 1), "{}", row.since);
        let [p, r, s] = &snap.goroutines[..] else {
            panic!("{}: {:?}", row.since, snap.goroutines)
        };
        assert_eq!((p.goid, p.state, p.wait_reason), (7, State::Waiting, 7));
        assert_eq!(p.pcs, Ok(vec![0x40_1000, 0x40_2000, 0x40_3000, 0x40_4001]));
        assert_eq!(
            (p.gopc, p.startpc, p.wait_since),
            (0x40_0100, 0x40_0200, 77)
        );
        assert_eq!(p.parent_goid, row.goroutines.g.parent_goid.map(|_| 1));
        assert_eq!(p.stack_bytes(), 0x1000);
        assert_eq!(
            (r.goid, r.state, r.pcs.clone()),
            (9, State::Running, Err(Unstable::OnCpu))
        );
        assert_eq!(
            (s.state, s.pcs.clone()),
            (State::Waiting, Ok(vec![0x40_1000]))
        );
    }
}

/// A chain that leaves the stack, goes down, or returns outside the code
/// is not made up into a stack.
#[test]
fn a_broken_chain_is_no_stack() {
    let layout = &rows()[0].goroutines;
    let lo = 0xc000_0000;
    let cases = [
        // bp below sp.
        frames(&[(lo + 0x180, lo + 0x80, 0x40_2000)]),
        // A return address outside the code.
        frames(&[(lo + 0x180, 0, 0x1234)]),
        // A frame pointer that goes down the stack.
        frames(&[
            (lo + 0x180, lo + 0x1c0, 0x40_2000),
            (lo + 0x1c0, lo + 0x180, 0x40_3000),
        ]),
    ];
    for chain in cases {
        let g = G::parked(0x1_0000, 7, lo, 0x40_1000, lo + 0x180);
        let snap = read_all(layout, &memory(layout, &[g], chain)).unwrap();
        assert_eq!(snap.goroutines[0].pcs, Err(Unstable::BrokenChain));
    }
    // A saved sp outside the stack bounds.
    let mut g = G::parked(0x1_0000, 7, lo, 0x40_1000, 0);
    g.sched.0 = lo + 0x2000;
    let snap = read_all(layout, &memory(layout, &[g], vec![])).unwrap();
    assert_eq!(snap.goroutines[0].pcs, Err(Unstable::BrokenChain));
}

/// Found by fuzzing (goroutines): a frame pointer within 16 bytes of the
/// top of the address space overflowed the bounds check.
#[test]
fn a_frame_pointer_at_the_top_of_memory_is_no_stack() {
    let layout = &rows()[0].goroutines;
    let hi = u64::MAX;
    let g = G {
        addr: 0x1_0000,
        status: 4,
        goid: 7,
        stack: (hi - 0x1000, hi),
        sched: (hi - 0x100, 0x40_1000, hi - 7),
    };
    let snap = read_all(layout, &memory(layout, &[g], vec![])).unwrap();
    assert_eq!(snap.goroutines[0].pcs, Err(Unstable::BrokenChain));
}

/// Memory whose goroutine at `g` moves its saved sp on every read of it:
/// a goroutine that keeps running between reads.
struct Moving {
    inner: FakeMemory,
    g: u64,
    sp_at: u64,
    reads: Cell<u64>,
}

impl Memory for Moving {
    fn read_at(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(addr, buf)?;
        if addr == self.g {
            let n = self.reads.get() + 1;
            self.reads.set(n);
            let sp = u64::from_le_bytes(buf[self.sp_at as usize..][..8].try_into().unwrap());
            let moved = sp + 8 * (n % 2);
            buf[self.sp_at as usize..][..8].copy_from_slice(&moved.to_le_bytes());
        }
        Ok(())
    }
}

#[test]
fn a_goroutine_that_moves_under_every_read_is_counted_not_guessed() {
    let layout = &rows()[2].goroutines;
    let lo = 0xc000_0000;
    let g = G::parked(0x1_0000, 7, lo, 0x40_1000, 0);
    let mem = Moving {
        inner: memory(layout, &[g], vec![]),
        g: g.addr,
        sp_at: u64::from(layout.g.sched + layout.g.gobuf.sp),
        reads: Cell::new(0),
    };
    let snap = read_all(layout, &mem).unwrap();
    assert_eq!(snap.goroutines[0].pcs, Err(Unstable::Changed));
    assert_eq!(snap.goroutines[0].goid, 7);
    assert_eq!(mem.reads.get() as usize, ATTEMPTS + 1);
}

/// What the addresses point to must look like Go's goroutines.
#[test]
fn a_list_that_is_not_goroutines_is_refused() {
    let layout = &rows()[0].goroutines;
    let lo = 0xc000_0000;
    let bad_status = G {
        status: 0x77,
        ..G::parked(0x1_0000, 7, lo, 0x40_1000, 0)
    };
    let e = read_all(layout, &memory(layout, &[bad_status], vec![])).unwrap_err();
    assert!(e.to_string().contains("status 0x77"), "{e}");

    let mut inverted = G::parked(0x1_0000, 7, lo, 0x40_1000, 0);
    inverted.stack = (lo + 0x1000, lo);
    let e = read_all(layout, &memory(layout, &[inverted], vec![])).unwrap_err();
    assert!(e.to_string().contains("has stack"), "{e}");

    // An empty list, and a huge one.
    for len in [0u64, u64::MAX / 2] {
        let mem = memory(layout, &[], vec![]);
        mem.0.borrow_mut()[0].1 = len.to_le_bytes().to_vec();
        let e = read_all(layout, &mem).unwrap_err();
        assert!(matches!(e, ReadError::NotGoroutines(_)), "{e}");
    }

    // Parked goroutines whose saved pcs are all outside the code.
    let gs: Vec<G> = (0..3)
        .map(|i| G::parked(0x1_0000 + i * 0x1000, i + 1, lo + i * 0x1000, 0x99, 0))
        .collect();
    let e = read_all(layout, &memory(layout, &gs, vec![])).unwrap_err();
    assert!(e.to_string().contains("none of 3 parked"), "{e}");

    // A g pointer into nothing: the read fails, nothing is made up.
    let mem = memory(
        layout,
        &[G::parked(0xdead_0000, 1, lo, 0x40_1000, 0)],
        vec![],
    );
    mem.0.borrow_mut().retain(|(a, _)| *a != 0xdead_0000);
    let e = read_all(layout, &mem).unwrap_err();
    assert!(
        matches!(
            e,
            ReadError::Memory(ReadFailed {
                addr: 0xdead_0000,
                ..
            })
        ),
        "{e}"
    );
}

fn go_strings(names: &[&str]) -> FakeMemory {
    let mut array = Vec::new();
    let mut ranges = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let at = 0x2_0000 + i as u64 * 0x100;
        array.extend(at.to_le_bytes());
        array.extend((name.len() as u64).to_le_bytes());
        ranges.push((at, name.as_bytes().to_vec()));
    }
    ranges.push((0x1_0000, array));
    FakeMemory(RefCell::new(ranges))
}

#[test]
fn wait_reasons_are_the_targets_own_names() {
    let mem = go_strings(&["", "GC assist marking", "IO wait", "chan receive"]);
    let names = read_wait_reasons(&mem, 0x1_0000, 4).unwrap();
    assert_eq!(names, ["", "GC assist marking", "IO wait", "chan receive"]);
    // waitReasonZero is empty and no other is: else it is not the array.
    for bad in [&["x", "IO wait"][..], &["", ""][..], &["", "a\u{1}b"][..]] {
        let e = read_wait_reasons(&go_strings(bad), 0x1_0000, 2).unwrap_err();
        assert!(e.to_string().contains("wait reasons are not names"), "{e}");
    }
}
