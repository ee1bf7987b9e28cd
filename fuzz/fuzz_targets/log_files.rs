#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moldau_fuzz::log_files(data));
