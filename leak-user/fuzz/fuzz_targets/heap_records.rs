//! Fuzz target: `leak_user::fuzzing::heap_records`, over a fake memory. With
//! `LEAK_FUZZ_SEED_DIR` set, first writes valid inputs there (one per
//! runtime-table row), built from the table's own layouts.
#![no_main]
libfuzzer_sys::fuzz_target!(
    init: leak_user::fuzzing::write_seeds("heap_records"),
    |data: &[u8]| leak_user::fuzzing::heap_records(data)
);
