#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::push::fuzz::register_body(data));
