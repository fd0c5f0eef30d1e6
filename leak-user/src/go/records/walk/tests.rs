use super::*;
use crate::{go::table::rows, process::memory::FakeMemory};

const HEAD: u64 = 0x9000;
const CYCLE: u64 = 0x9100;
const TEXT: std::ops::Range<u64> = 0x40_0000..0x50_0000;

/// A bucket's bytes for `row`: header, pcs, then `cycles` (allocs, frees)
/// with bytes as count × size where the row keeps bytes.
fn bucket(
    row: &RuntimeProbes,
    next: u64,
    size: u64,
    pcs: &[u64],
    cycles: [(u64, u64); 4],
) -> Vec<u8> {
    let l = row.records.bucket;
    let r = row.records.mem_record;
    let mut b = vec![0u8; l.stack as usize + pcs.len() * 8 + r.size() as usize];
    let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(l.allnext as usize, next);
    put(l.typ as usize, MEM_PROFILE);
    put(l.size as usize, size);
    put(l.nstk as usize, pcs.len() as u64);
    for (i, pc) in pcs.iter().enumerate() {
        put(l.stack as usize + i * 8, *pc);
    }
    let at = l.stack as usize + pcs.len() * 8;
    for (i, (allocs, frees)) in cycles.iter().enumerate() {
        let c = at + i * r.cycle_size as usize;
        put(c + r.allocs as usize, *allocs);
        put(c + r.frees as usize, *frees);
        if let Some((a, f)) = r.bytes {
            put(c + a as usize, allocs * size);
            put(c + f as usize, frees * size);
        }
    }
    b
}

fn memory(row: &RuntimeProbes, cycle_word: u32, buckets: &[(u64, Vec<u8>)]) -> FakeMemory {
    let mut ranges = vec![
        (
            HEAD,
            buckets
                .first()
                .map(|b| b.0)
                .unwrap_or(0)
                .to_le_bytes()
                .to_vec(),
        ),
        (CYCLE, cycle_word.to_le_bytes().to_vec()),
    ];
    ranges.extend(buckets.iter().cloned());
    let _ = row;
    FakeMemory(std::cell::RefCell::new(ranges))
}

fn read_all(row: &RuntimeProbes, mem: &FakeMemory) -> Result<Snapshot, ReadError> {
    let at = Location {
        buckets: HEAD,
        cycle: CYCLE,
    };
    read(mem, row, at, &|pc| TEXT.contains(&pc))
}

#[test]
fn counts_as_memprofile_does_in_every_row() {
    for row in rows() {
        let b2 = bucket(row, 0, 64, &[0x40_1000], [(0, 0), (5, 5), (9, 9), (1, 0)]);
        // Active 10 allocs, 4 frees; cycle 4 → future[1] adds 3 and 1.
        let b1 = bucket(
            row,
            0x2_0000,
            10_000,
            &[0x40_2000, 0x40_3000],
            [(10, 4), (7, 7), (3, 1), (100, 0)],
        );
        let mem = memory(row, 4 << 1, &[(0x1_0000, b1), (0x2_0000, b2)]);
        let snap = read_all(row, &mem).unwrap_or_else(|e| panic!("{}: {e}", row.since));
        assert_eq!(snap.gc_cycles, 4);
        assert!(!snap.before_first_gc);
        let [first, second] = &snap.buckets[..] else {
            panic!("{}: {:?}", row.since, snap.buckets)
        };
        assert_eq!((first.addr, first.size), (0x1_0000, 10_000));
        assert_eq!(first.stack, vec![0x40_2000, 0x40_3000]);
        assert_eq!(
            first.counts,
            Counts {
                allocs: 13,
                frees: 5,
                alloc_bytes: 130_000,
                free_bytes: 50_000
            },
            "{}",
            row.since
        );
        assert_eq!(first.counts.inuse_bytes(), 80_000);
        // The second bucket: active is empty, future[1] holds 9 and 9.
        assert_eq!((second.counts.allocs, second.counts.frees), (9, 9));
    }
}

#[test]
fn before_the_first_gc_every_cycle_counts() {
    let row = &rows()[0];
    let b = bucket(row, 0, 32, &[0x40_1000], [(0, 0), (2, 0), (0, 0), (5, 1)]);
    // Cycle 1: future[1] is empty, active is empty: nothing published yet.
    let snap = read_all(row, &memory(row, 1 << 1 | 1, &[(0x1_0000, b)])).unwrap();
    assert!(snap.before_first_gc);
    assert_eq!(
        (snap.buckets[0].counts.allocs, snap.buckets[0].counts.frees),
        (7, 1)
    );
}

#[test]
fn a_list_that_is_not_buckets_is_refused() {
    let row = &rows()[0];
    let mut b = bucket(row, 0, 32, &[0x40_1000], [(1, 0); 4]);
    b[row.records.bucket.typ as usize] = 2; // a block profile bucket
    let e = read_all(row, &memory(row, 2, &[(0x1_0000, b)])).unwrap_err();
    assert!(matches!(e, ReadError::NotRecords(_)), "{e}");

    let b = bucket(row, 0, 32, &[0x1234], [(1, 0); 4]);
    let e = read_all(row, &memory(row, 2, &[(0x1_0000, b)])).unwrap_err();
    assert!(e.to_string().contains("outside the program's code"), "{e}");

    let deep: Vec<u64> = (0..33).map(|i| 0x40_1000 + i).collect();
    let b = bucket(row, 0, 32, &deep, [(1, 0); 4]);
    let e = read_all(row, &memory(row, 2, &[(0x1_0000, b)])).unwrap_err();
    assert!(e.to_string().contains("33 frames"), "{e}");

    // A next pointer into nothing: the read fails, it is not made up.
    let b = bucket(row, 0xdead_0000, 32, &[0x40_1000], [(1, 0); 4]);
    let e = read_all(row, &memory(row, 2, &[(0x1_0000, b)])).unwrap_err();
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

/// Found by fuzzing (heap_records): counts near u64::MAX in two cycles
/// overflowed their sum.
#[test]
fn huge_counts_do_not_overflow() {
    let row = &rows()[0];
    let big = u64::MAX - 1;
    let b = bucket(
        row,
        0,
        1,
        &[0x40_1000],
        [(big, big), (big, big), (big, big), (big, big)],
    );
    let snap = read_all(row, &memory(row, 4 << 1, &[(0x1_0000, b)])).unwrap();
    assert_eq!(snap.buckets[0].counts.allocs, u64::MAX);
}

/// Found by fuzzing (heap_records): a list whose last bucket points back
/// at the first was walked until memory ran out.
#[test]
fn a_list_that_loops_is_refused() {
    let row = &rows()[0];
    let b1 = bucket(row, 0x2_0000, 32, &[0x40_1000], [(1, 0); 4]);
    let b2 = bucket(row, 0x1_0000, 32, &[0x40_1000], [(1, 0); 4]);
    let mem = memory(row, 2, &[(0x1_0000, b1), (0x2_0000, b2)]);
    let e = read_all(row, &mem).unwrap_err();
    assert!(e.to_string().contains("the list loops"), "{e}");
}

#[test]
fn deep_stacks_are_read_whole() {
    let row = rows().last().unwrap();
    let deep: Vec<u64> = (0..200).map(|i| 0x40_1000 + i).collect();
    let b = bucket(row, 0, 48, &deep, [(3, 1), (0, 0), (0, 0), (0, 0)]);
    let snap = read_all(row, &memory(row, 6, &[(0x1_0000, b)])).unwrap();
    assert_eq!(snap.buckets[0].stack, deep);
    assert_eq!(snap.buckets[0].counts.inuse_objects(), 2);
}

#[test]
fn an_empty_list_is_an_empty_snapshot() {
    let row = &rows()[0];
    let snap = read_all(row, &memory(row, 0, &[])).unwrap();
    assert!(snap.buckets.is_empty());
}

#[test]
fn scales_as_pprof_does() {
    // One 10,000-byte object sampled at Go's default rate stands for
    // 1/(1 − e^(−10000/524288)) ≈ 52.93 of them.
    assert_eq!(scale(1, 10_000, 524_288), (52, 529_303));
    assert_eq!(scale(3, 10_000, 1), (3, 30_000));
    assert_eq!(scale(3, 10_000, 0), (3, 30_000));
    assert_eq!(scale(0, 10_000, 4096), (0, 0));
    // Large objects are always sampled: scale → 1.
    assert_eq!(scale(2, 64 << 20, 524_288), (2, 128 << 20));
}
