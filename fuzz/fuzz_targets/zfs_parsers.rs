#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zferry_core::zfs::parse::fuzz_parsers(data));
