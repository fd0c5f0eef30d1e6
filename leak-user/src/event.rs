//! What the kernel side sends, decoded once: ring buffer records of every
//! kind (Go samples, frees and GC cycles; brk/mmap calls) and the loss
//! counters.

use std::mem::{offset_of, size_of};

use aya::maps::{MapData, PerCpuArray};
#[cfg(test)]
use leak_common::ALLOC_HAS_STACK;
use leak_common::{
    AllocEvent, Counter, Event, EventKind, MapEvent, NativeAlloc, ALLOC_HEADER, COUNTERS,
    GO_MAX_FRAMES, MAX_FRAMES, NATIVE_GO_FRAMES, NATIVE_HEADER, NATIVE_STACK_WORDS, STACK_WORDS,
};

/// Bytes of the kind every record starts with.
const KIND_BYTES: usize = size_of::<u32>();

// What `decode` reads at fixed offsets, checked against the shared types:
// every record's kind in its first `KIND_BYTES`, an alloc's header up to
// `ALLOC_HEADER` (its frame count inside it) and its stack after it, in
// 8-byte entries.
const _: () = {
    assert!(offset_of!(AllocEvent, kind) == 0);
    assert!(offset_of!(Event, kind) == 0);
    assert!(offset_of!(MapEvent, kind) == 0);
    assert!(offset_of!(AllocEvent, tgid) == KIND_BYTES);
    assert!(offset_of!(AllocEvent, frames) + size_of::<u32>() <= ALLOC_HEADER);
    assert!(offset_of!(AllocEvent, stack) == ALLOC_HEADER);
    assert!(size_of::<AllocEvent>() == ALLOC_HEADER + GO_MAX_FRAMES * size_of::<u64>());
    assert!(offset_of!(NativeAlloc, kind) == 0);
    assert!(offset_of!(NativeAlloc, stack) == NATIVE_HEADER);
};

/// One decoded ring buffer record.
pub(crate) enum Record {
    /// A sampled allocation.
    Alloc(Box<AllocEvent>),
    /// A sampled object freed.
    Free(Event),
    /// A GC cycle ended.
    GcCycle(Event),
    /// A process of the traced binary started (`addr`: the probe's
    /// instruction pointer).
    Start(Event),
    /// A brk, mmap or munmap of a traced process.
    Map(Box<MapEvent>),
    /// A sampled native allocation, with the stack memory to unwind.
    NativeAlloc(Box<NativeAlloc>),
    /// A sampled native block freed.
    NativeFree(Event),
}

/// Decodes a ring buffer record; `None` for a record of unknown kind or
/// size (never expected: both sides share one definition).
pub(crate) fn decode(bytes: &[u8]) -> Option<Record> {
    let kind = EventKind::from_u32(u32::from_ne_bytes(
        bytes.get(..KIND_BYTES)?.try_into().ok()?,
    ))?;
    match kind {
        EventKind::Alloc if bytes.len() >= ALLOC_HEADER => {
            // Records carry only the frames captured: copy what came, the
            // rest of the stack stays zero.
            let mut ev = Box::new(AllocEvent {
                kind: 0,
                tgid: 0,
                timestamp_ns: 0,
                addr: 0,
                size: 0,
                bucket: 0,
                frames: 0,
                flags: 0,
                ip: 0,
                stack: [0; GO_MAX_FRAMES],
            });
            let n = bytes.len().min(size_of::<AllocEvent>());
            // SAFETY: at most size_of::<AllocEvent>() bytes into a plain-integer
            // struct.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    (&mut *ev as *mut AllocEvent).cast::<u8>(),
                    n,
                )
            };
            let carried = (n - ALLOC_HEADER) / size_of::<u64>();
            ev.frames = ev.frames.min(GO_MAX_FRAMES as u32).min(carried as u32);
            Some(Record::Alloc(ev))
        }
        EventKind::Free | EventKind::GcCycle | EventKind::Start | EventKind::NativeFree
            if bytes.len() >= size_of::<Event>() =>
        {
            // SAFETY: length checked; Event is plain integers.
            let ev: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            Some(match kind {
                EventKind::Free => Record::Free(ev),
                EventKind::GcCycle => Record::GcCycle(ev),
                EventKind::NativeFree => Record::NativeFree(ev),
                _ => Record::Start(ev),
            })
        }
        EventKind::NativeAlloc if bytes.len() >= NATIVE_HEADER => {
            Some(Record::NativeAlloc(decode_native_alloc(bytes)))
        }
        EventKind::Map if bytes.len() >= size_of::<MapEvent>() => {
            // SAFETY: length checked; MapEvent is plain integers.
            let mut ev: Box<MapEvent> =
                Box::new(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) });
            ev.frames = ev.frames.min(MAX_FRAMES as u32);
            ev.words = ev.words.min(STACK_WORDS as u32);
            Some(Record::Map(ev))
        }
        _ => None,
    }
}

/// A native allocation record: its header and the stack words that came
/// (records carry only those copied).
fn decode_native_alloc(bytes: &[u8]) -> Box<NativeAlloc> {
    let mut ev = Box::new(NativeAlloc {
        kind: 0,
        tgid: 0,
        addr: 0,
        size: 0,
        ip: 0,
        sp: 0,
        bp: 0,
        words: 0,
        _pad: 0,
        go_frames: 0,
        _pad2: 0,
        time_ns: 0,
        go_pcs: [0; NATIVE_GO_FRAMES],
        stack: [0; NATIVE_STACK_WORDS],
    });
    let n = bytes.len().min(size_of::<NativeAlloc>());
    // SAFETY: at most size_of::<NativeAlloc>() bytes into a plain-integer
    // struct.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (&mut *ev as *mut NativeAlloc).cast::<u8>(),
            n,
        )
    };
    let carried = (n - NATIVE_HEADER) / size_of::<u64>();
    ev.words = ev.words.min(carried as u32);
    ev.go_frames = ev.go_frames.min(NATIVE_GO_FRAMES as u32);
    ev
}

/// Kernel-side counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelCounters([u64; COUNTERS as usize]);

impl KernelCounters {
    /// Reads the `COUNTERS` map.
    pub(crate) fn read(map: &PerCpuArray<MapData, u64>) -> Self {
        let mut out = [0u64; COUNTERS as usize];
        for (slot, total) in out.iter_mut().enumerate() {
            if let Ok(values) = map.get(&(slot as u32), 0) {
                *total = values.iter().sum();
            }
        }
        Self(out)
    }

    /// One counter.
    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-integer struct.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
    }

    /// A sample of `size` bytes at `addr` carrying `stack`.
    fn alloc(addr: u64, size: u64, stack: &[u64]) -> AllocEvent {
        let mut a = AllocEvent {
            kind: EventKind::Alloc as u32,
            tgid: 7,
            timestamp_ns: 1,
            addr,
            size,
            bucket: 0xc000401000,
            frames: stack.len() as u32,
            flags: ALLOC_HAS_STACK,
            ip: 0x401000,
            stack: [0xdead; GO_MAX_FRAMES],
        };
        a.stack[..stack.len()].copy_from_slice(stack);
        a
    }

    #[test]
    fn decodes_each_kind() {
        let a = alloc(0xc000010000, 10240, &[0x402000, 0x403000]);
        match decode(&bytes_of(&a)) {
            Some(Record::Alloc(ev)) => {
                assert_eq!(ev.tgid, 7);
                assert_eq!(ev.size, 10240);
                assert_eq!((ev.bucket, ev.flags), (0xc000401000, ALLOC_HAS_STACK));
                assert_eq!(&ev.stack[..2], &[0x402000, 0x403000]);
            }
            _ => panic!("not an alloc"),
        }
        let f = Event {
            kind: EventKind::Free as u32,
            tgid: 7,
            timestamp_ns: 2,
            addr: 0xc000010000,
            size: 10240,
        };
        assert!(matches!(decode(&bytes_of(&f)), Some(Record::Free(e)) if e.addr == 0xc000010000));
        let g = Event {
            kind: EventKind::GcCycle as u32,
            ..Event::default()
        };
        assert!(matches!(decode(&bytes_of(&g)), Some(Record::GcCycle(_))));
    }

    #[test]
    fn short_alloc_records_carry_only_their_frames() {
        let bytes = bytes_of(&alloc(0x10, 64, &[1, 2, 3]));
        match decode(&bytes[..ALLOC_HEADER + 3 * 8]) {
            Some(Record::Alloc(ev)) => {
                assert_eq!(ev.frames, 3);
                assert_eq!(&ev.stack[..4], &[1, 2, 3, 0]);
            }
            _ => panic!("not an alloc"),
        }
        // A record claiming more frames than it carries is cut to what came.
        match decode(&bytes[..ALLOC_HEADER + 8]) {
            Some(Record::Alloc(ev)) => assert_eq!(ev.frames, 1),
            _ => panic!("not an alloc"),
        }
    }

    #[test]
    fn rejects_short_or_unknown_records() {
        assert!(decode(&[1, 0, 0, 0, 5]).is_none());
        assert!(decode(&[9, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(decode(&[]).is_none());
    }
}
