#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moldau_fuzz::metadata_log(data));
