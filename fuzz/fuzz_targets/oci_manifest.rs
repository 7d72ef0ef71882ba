#![no_main]
//! libFuzzer entry for the `oci_manifest` target (see `sandlet_fuzzing::oci_manifest`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandlet_fuzzing::oci_manifest(data));
