//! Fuzz target: `leak_user::fuzzing::native_record`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| leak_user::fuzzing::native_record(data));
