#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zferry_core::fuzzing::rpc_session(data));
