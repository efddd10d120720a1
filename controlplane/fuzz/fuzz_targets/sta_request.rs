#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::sta::xml::fuzz::request(data));
