#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moldau_fuzz::request(data));
