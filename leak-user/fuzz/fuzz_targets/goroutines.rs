//! Fuzz target: `leak_user::fuzzing::goroutines`, over a fake memory. With
//! `LEAK_FUZZ_SEED_DIR` set, first writes valid inputs there (one per
//! runtime-table row), built from the table's own layouts.
#![no_main]
libfuzzer_sys::fuzz_target!(
    init: leak_user::fuzzing::write_seeds("goroutines"),
    |data: &[u8]| leak_user::fuzzing::goroutines(data)
);
