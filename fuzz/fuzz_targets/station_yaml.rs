#![no_main]
//! libFuzzer entry for the `station_yaml` target (see `sandlet_fuzzing::station_yaml`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandlet_fuzzing::station_yaml(data));
