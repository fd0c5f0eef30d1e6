//! Fuzz target: `leak_user::fuzzing::proc_text`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| leak_user::fuzzing::proc_text(data));
