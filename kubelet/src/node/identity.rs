//! Who this node is: its name, the address of its kubelet API, its
//! capacity and the host's system identifiers, found once at start.
//!
//! This module owns [`NodeIdentity`]. It does no IO but reading the host's
//! `/proc` and `/etc/machine-id` once; it must never report more capacity
//! than the host has.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::NodeSystemInfo;

/// Everything the Node object says about this node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub(crate) name: String,
    /// The address the API server reaches the kubelet API at.
    pub(crate) address: IpAddr,
    pub(crate) port: u16,
    pub(crate) max_pods: u32,
    pub(crate) cpus: u32,
    pub(crate) memory_bytes: u64,
    /// `nodeInfo`: read from the host once, reported with every status.
    pub(crate) system_info: NodeSystemInfo,
}

impl NodeIdentity {
    /// This machine's cpus, memory and system identifiers;
    /// `runtime_version` is wasmtime's.
    pub fn detect(
        name: &str,
        address: IpAddr,
        port: u16,
        max_pods: u32,
        runtime_version: &str,
    ) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(1 << 30, |kib| kib * 1024);
        NodeIdentity {
            name: name.to_owned(),
            address,
            port,
            max_pods,
            cpus,
            memory_bytes,
            system_info: system_info(runtime_version),
        }
    }

    /// The address reported as InternalIP: an unspecified bind address
    /// (0.0.0.0) is reported as loopback.
    pub(crate) fn internal_address(&self) -> IpAddr {
        if self.address.is_unspecified() {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            self.address
        }
    }

    /// [`NodeIdentity::internal_address`] as text.
    pub(crate) fn internal_ip(&self) -> String {
        self.internal_address().to_string()
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `nodeInfo`, with the host's kernel, machine and boot identifiers.
pub(crate) fn system_info(runtime_version: &str) -> NodeSystemInfo {
    NodeSystemInfo {
        architecture: "wasm32".to_owned(),
        operating_system: "wasi".to_owned(),
        os_image: "sandlet (WASI preview 2)".to_owned(),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        machine_id: read_trimmed("/etc/machine-id"),
        system_uuid: read_trimmed("/etc/machine-id"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: format!("wasmtime://{runtime_version}"),
        kubelet_version: format!("v1.36.0-sandlet.{}", env!("CARGO_PKG_VERSION")),
        kube_proxy_version: String::new(),
        ..NodeSystemInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl NodeIdentity {
        /// A node for tests.
        pub(crate) fn example() -> NodeIdentity {
            NodeIdentity {
                name: "station-a".into(),
                address: "0.0.0.0".parse().unwrap(),
                port: 10250,
                max_pods: 500,
                cpus: 2,
                memory_bytes: 8 << 30,
                system_info: system_info("48.0.8"),
            }
        }
    }
}
