#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zferry_core::fuzzing::frame_decoder(data));
