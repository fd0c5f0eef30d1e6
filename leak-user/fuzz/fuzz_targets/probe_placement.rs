//! Fuzz target: `leak_user::fuzzing::probe_placement`. With `LEAK_FUZZ_SEED_DIR`
//! set, first writes seeds there from the C and C++ libraries' functions.
#![no_main]
libfuzzer_sys::fuzz_target!(
    init: leak_user::fuzzing::write_seeds("probe_placement"),
    |data: &[u8]| leak_user::fuzzing::probe_placement(data)
);
