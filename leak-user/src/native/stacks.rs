//! Native user stacks rebuilt from what the kernel side copies at a
//! syscall: the frame-pointer walk, with the frames of code built without
//! frame pointers (the C library's) recovered from return addresses found
//! on the stack, and the C library's own leaf frames trimmed.

use crate::frame::Frame;

/// The stack of a brk or mmap, innermost first: where the syscall was made;
/// then the return addresses found on the stack memory (`words`, read
/// from `sp` up) below the first frame pointer `bp` — the frames of code
/// without frame pointers, libc's, which the walk skips; then the rest of
/// the frame-pointer walk. When `bp` is not within the words, the scan
/// stops at the walk's first return address instead.
pub(crate) fn user_stack(
    walk: &[u64],
    sp: u64,
    bp: u64,
    words: &[u64],
    mut is_return_address: impl FnMut(u64) -> bool,
) -> Vec<u64> {
    let Some((&leaf, callers)) = walk.split_first() else {
        return Vec::new();
    };
    let mut out = vec![leaf];
    let span = words.len() as u64 * 8;
    let scanned = if bp > sp && bp - sp < span {
        &words[..((bp - sp) / 8) as usize]
    } else {
        words
    };
    for &w in scanned {
        if callers.first() == Some(&w) {
            break;
        }
        if is_return_address(w) {
            out.push(w);
        }
    }
    out.extend_from_slice(callers);
    out
}

/// The file name of the object whose code `frame` is (`libc.so.6`).
fn object_name(frame: &Frame) -> &str {
    frame.object.rsplit('/').next().unwrap_or_default()
}

/// Whether a frame is in the C library or the dynamic loader.
fn in_c_library(frame: &Frame) -> bool {
    let name = object_name(frame);
    ["libc.so", "libc-", "libc.musl", "ld-linux", "ld-musl"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Drops the C library's frames at the leaf end but the one the program
/// called (`malloc`), so the leaf is where the program asked for memory, as
/// Go's profiles trim the runtime. A stack of C library frames alone stays.
pub(crate) fn trim_c_library(frames: Vec<Frame>) -> Vec<Frame> {
    match frames.iter().position(|f| !in_c_library(f)) {
        Some(first_own) if first_own > 1 => frames.into_iter().skip(first_own - 1).collect(),
        _ => frames,
    }
}

/// Objects that are allocators: a stack's leaf frames in them are the
/// allocator's, not the program's.
fn in_allocator_object(frame: &Frame) -> bool {
    let name = object_name(frame);
    in_c_library(frame)
        || [
            "libstdc++.so",
            "libjemalloc.so",
            "libtcmalloc",
            "libmimalloc.so",
        ]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Functions that allocate on their caller's behalf, by name (demangled):
/// C++'s `operator new` family and the standard library's allocators
/// inlined over it, Rust's allocator shims and its `alloc` crate (`Vec`,
/// `Box`, `RawVec`, `Global`: what DWARF shows inlined into the caller).
fn is_allocator_function(function: &str) -> bool {
    function.starts_with("operator new")
        || function.starts_with("__rust_alloc")
        || function.starts_with("__rust_realloc")
        || function.starts_with("__rdl_")
        || function.starts_with("__rg_")
        || function.starts_with("alloc::")
        || function.starts_with("<alloc::")
        || function.contains(" as alloc::")
        || function.starts_with("std::__new_allocator<")
        || function.starts_with("__gnu_cxx::new_allocator<")
        || function.starts_with("std::allocator_traits<")
        || matches!(function, "malloc" | "calloc" | "realloc" | "free")
}

/// Drops the allocator's frames at the leaf end of a sampled allocation's
/// stack (the C library's malloc, C++'s operator new, Rust's shims), so the
/// leaf is the function that asked for memory, as Go's profiles trim the
/// runtime. A stack of allocator frames alone stays.
pub(crate) fn trim_allocator(frames: Vec<Frame>) -> Vec<Frame> {
    let own = frames
        .iter()
        .position(|f| !in_allocator_object(f) && !is_allocator_function(&f.function));
    match own {
        Some(first_own) if first_own > 0 => frames.into_iter().skip(first_own).collect(),
        _ => frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_scan_fills_in_frames_without_frame_pointers() {
        // Syscall in libc at 0x7000; libc frames 0x7100, 0x7200 on the
        // stack, then the C function's return 0x4100, a stray value, and
        // the walk's first return address 0x4200 at bp+8.
        let sp = 0x1000;
        let words = [
            0x7100,
            0x55,
            0x7200,
            0x4100,
            0x4200 - 1,
            0x2000,
            0x4200,
            0x9999,
        ];
        let is_ra = |a: u64| matches!(a, 0x7100 | 0x7200 | 0x4100 | 0x4200 | 0x9999);
        let walk = [0x7000, 0x4200, 0x4300];
        // bp points at the saved rbp (word 5), the walk continues at word 6.
        let with_bp = user_stack(&walk, sp, sp + 5 * 8, &words, is_ra);
        assert_eq!(with_bp, [0x7000, 0x7100, 0x7200, 0x4100, 0x4200, 0x4300]);
        // bp unusable: scan up to the walk's first return address.
        let without = user_stack(&walk, sp, 0, &words, is_ra);
        assert_eq!(without, with_bp);
        assert!(user_stack(&[], sp, 0, &words, is_ra).is_empty());
    }

    #[test]
    fn c_library_leaf_frames_are_trimmed_to_the_called_one() {
        let frame =
            |function: &str, file: &str| Frame::in_object(function, file, 0, false, file.into());
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let stack = vec![
            frame("brk", libc),
            frame("sbrk", libc),
            frame("malloc", libc),
            frame("leak_request_buffer", "/tmp/leaker"),
            frame("main", "/tmp/leaker"),
            frame("__libc_start_main", libc),
        ];
        let names: Vec<String> = trim_c_library(stack)
            .into_iter()
            .map(|f| f.function.to_string())
            .collect();
        assert_eq!(
            names,
            ["malloc", "leak_request_buffer", "main", "__libc_start_main"]
        );
        let only_libc = vec![frame("brk", libc), frame("exit", libc)];
        assert_eq!(trim_c_library(only_libc).len(), 2);
    }

    /// The allocator's frames go from the leaf end: the C library's malloc
    /// (with the functions inlined into it, which its DWARF names), libstdc++'s
    /// operator new (by its object or its name), Rust's shims; the first
    /// frame of the program's own stays, and a stack of allocator frames
    /// alone is kept whole.
    #[test]
    fn allocator_frames_are_trimmed_from_the_leaf() {
        let f = |name: &str, file: &str| Frame::in_object(name, file, 0, false, file.into());
        let names = |frames: Vec<Frame>| -> Vec<String> {
            frames.iter().map(|f| f.function.to_string()).collect()
        };
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let with_dwarf = vec![
            Frame::in_object("tcache_get", "./malloc/malloc.c", 3154, true, libc.into()),
            Frame::in_object(
                "__libc_malloc",
                "./malloc/malloc.c",
                3295,
                false,
                libc.into(),
            ),
            Frame::in_object("remember", "/srv/leaker.c", 12, true, "/srv/leaker".into()),
            Frame::in_object("handle", "/srv/leaker.c", 20, false, "/srv/leaker".into()),
        ];
        assert_eq!(names(trim_allocator(with_dwarf)), ["remember", "handle"]);
        let cpp = vec![
            f("malloc", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            f(
                "operator new(unsigned long)",
                "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            ),
            f("app::Session::remember(unsigned long)", "/srv/app"),
            f("main", "/srv/app"),
        ];
        assert_eq!(
            names(trim_allocator(cpp)),
            ["app::Session::remember(unsigned long)", "main"]
        );
        let rust = vec![
            f("malloc", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            f("__rdl_alloc", "/srv/rleak"),
            f("__rust_alloc", "/srv/rleak"),
            f("alloc::alloc::exchange_malloc", "/srv/rleak"),
            f("rleak::Cache::remember", "/srv/rleak"),
        ];
        assert_eq!(names(trim_allocator(rust)), ["rleak::Cache::remember"]);
        // With DWARF: the alloc crate's frames inlined into the caller, and
        // libstdc++'s allocators inlined into a std::vector.
        let inlined = |name: &str| Frame::in_object(name, "", 1, true, "/srv/rleak".into());
        let rust = vec![
            inlined("<alloc::alloc::Global as core::alloc::Allocator>::allocate"),
            inlined("alloc::raw_vec::RawVecInner<A>::try_allocate_in"),
            inlined("<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem"),
            inlined("alloc::vec::from_elem"),
            f("rleak::Cache::remember", "/srv/rleak"),
        ];
        assert_eq!(names(trim_allocator(rust)), ["rleak::Cache::remember"]);
        let cpp = vec![
            inlined("std::__new_allocator<char>::allocate(unsigned long, void const*)"),
            inlined("std::allocator_traits<std::allocator<char> >::allocate(std::allocator<char>&, unsigned long)"),
            inlined("std::_Vector_base<char, std::allocator<char> >::_M_allocate(unsigned long)"),
            f("app::churn(int)", "/srv/app"),
        ];
        assert_eq!(
            names(trim_allocator(cpp)),
            [
                "std::_Vector_base<char, std::allocator<char> >::_M_allocate(unsigned long)",
                "app::churn(int)"
            ]
        );
        let only = vec![f("malloc", "/usr/lib/x86_64-linux-gnu/libc.so.6")];
        assert_eq!(names(trim_allocator(only)), ["malloc"]);
    }
}
