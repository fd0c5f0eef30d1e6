//! Fuzz target: `leak_user::fuzzing::go_binary`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| leak_user::fuzzing::go_binary(data));
