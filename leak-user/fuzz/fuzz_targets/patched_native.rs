//! Fuzz target: real native objects (the C and C++ libraries, C and C++
//! test builds) with bytes flipped in the parts leak reads (headers,
//! symbols, unwind tables), and cut short
//! (`leak_user::fuzzing::patched_native`). The objects are the files named
//! in `LEAK_FUZZ_BINARIES` (`:`-separated), read once.
#![no_main]
use std::sync::OnceLock;

use leak_user::fuzzing::{patched_native, Base};

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| Base::from_env().expect("LEAK_FUZZ_BINARIES names no readable file"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| patched_native(bases(), data));
