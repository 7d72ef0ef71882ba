#![no_main]
//! libFuzzer entry for the `pod_admission` target (see `sandlet_fuzzing::pod_admission`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandlet_fuzzing::pod_admission(data));
