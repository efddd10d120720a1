#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse::web::fuzz::form_and_cookies(data));
