#![no_main]
//! libFuzzer entry for the `docker_config` target (see `sandlet_fuzzing::docker_config`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandlet_fuzzing::docker_config(data));
