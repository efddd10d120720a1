#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::api::fuzz::request(data));
