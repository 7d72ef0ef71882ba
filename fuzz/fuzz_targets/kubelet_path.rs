#![no_main]
//! libFuzzer entry for the `kubelet_path` target (see `sandlet_fuzzing::kubelet_path`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandlet_fuzzing::kubelet_path(data));
