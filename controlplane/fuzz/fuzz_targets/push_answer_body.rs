#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::push::fuzz::answer_body(data));
