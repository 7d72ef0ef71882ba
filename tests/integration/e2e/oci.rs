//! A pull onto a full disk: named, and no partial entry left. Mounts a
//! small tmpfs, so it needs root; the registry is Debian's, on loopback.

use sandlet_registry::allow_list::AllowList;
use sandlet_registry::oci::Credentials;
use sandlet_registry::store::ModuleStore;
use sandlet_runtime::Digest;

use crate::fixtures::guests;
use crate::local::oci::{loopback_client, stored_files};
use crate::registry::{RegistrySetup, TestRegistry};
use crate::services::oci::push_module;

#[tokio::test]
async fn a_full_disk_is_named_and_leaves_no_partial_entry() {
    let registry = TestRegistry::start(RegistrySetup::default());
    let wasm = std::fs::read(&guests().hello).unwrap();
    let reference = push_module(&registry, "big", &wasm).await;
    // Smaller than the module.
    let disk = crate::fixtures::SmallDisk::mount(&format!("{}", wasm.len() / 2));
    let store = ModuleStore::open(disk.dir.path(), 1 << 30).unwrap();
    let client = loopback_client(&registry.addr);
    let err = client
        .pull(
            &reference,
            &Credentials::anonymous(),
            &store,
            &AllowList::allow_all(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert_eq!(stored_files(disk.dir.path()), 0, "no partial entry");
    assert!(!store.contains(&Digest::of(&wasm)));
}
