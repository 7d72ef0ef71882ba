#![no_main]
//! libFuzzer entry for the `module` target (see `sandlet_fuzzing::module`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandlet_fuzzing::module(data));
