// Command worker-config writes a container worker's configuration files
// for scripts/worker: the CNI network, the registry's hosts.toml,
// containerd's config (version 3), the kubelet's KubeletConfiguration and
// the pods' resolv.conf. Values are encoded, not pasted into templates, so
// a path with a quote or a space cannot change what a file says.
//
//	worker-config --worker W --cluster DIR --id ID --node-ip IP \
//	    --kubelet-port P --healthz-port P --registry HOST:PORT \
//	    --sandbox-image REF --runc PATH
//
// Inside the worker's private mount namespace /var/lib, /var/log and /run
// are the worker's own directories, so containerd's and the kubelet's
// default paths under them are used as they are.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// PodSubnet is the documentation range pods get addresses on.
const PodSubnet = "198.51.100.0/24"

// tomlString quotes s as a TOML basic string (JSON's escapes are TOML's
// for everything a path or reference can hold; control characters are
// refused before).
func tomlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func write(path string, data []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		log.Fatal(err)
	}
}

func writeJSON(path string, value any) {
	b, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	write(path, append(b, '\n'))
}

func main() {
	worker := flag.String("worker", "", "the worker's directory (DIR/workers/NAME)")
	cluster := flag.String("cluster", "", "the cluster's directory (DIR)")
	id := flag.String("id", "", "the worker's id (names its bridge and cgroup root)")
	nodeIP := flag.String("node-ip", "", "the node's address")
	kubeletPort := flag.Int("kubelet-port", 0, "the kubelet API's port")
	healthzPort := flag.Int("healthz-port", 0, "the kubelet's healthz port (on 127.0.0.1)")
	registry := flag.String("registry", "", "HOST:PORT of the loopback registry")
	sandbox := flag.String("sandbox-image", "", "the pause image's reference")
	runc := flag.String("runc", "", "path of the runc binary")
	flag.Parse()
	for name, value := range map[string]string{
		"worker": *worker, "cluster": *cluster, "id": *id, "node-ip": *nodeIP,
		"registry": *registry, "sandbox-image": *sandbox, "runc": *runc,
	} {
		if value == "" {
			log.Fatalf("--%s is required", name)
		}
		if strings.IndexFunc(value, unicode.IsControl) >= 0 {
			log.Fatalf("--%s holds a control character", name)
		}
	}
	if *kubeletPort <= 0 || *healthzPort <= 0 {
		log.Fatal("--kubelet-port and --healthz-port are required")
	}

	// Pods: one bridge of their own, no address on the host, no gateway,
	// no masquerade; host-local addresses on a documentation range.
	writeJSON(filepath.Join(*worker, "cni", "10-sandlet.conflist"), map[string]any{
		"cniVersion": "1.0.0",
		"name":       "sandlet-" + *id,
		"plugins": []any{map[string]any{
			"type":             "bridge",
			"bridge":           "slw" + *id,
			"isGateway":        false,
			"isDefaultGateway": false,
			"ipMasq":           false,
			"hairpinMode":      false,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": PodSubnet}}},
				"dataDir": "/var/lib/cni/networks",
			},
		}},
	})

	// The registry is plain HTTP on loopback.
	server := tomlString("http://" + *registry)
	write(filepath.Join(*worker, "certs.d", *registry, "hosts.toml"), []byte(fmt.Sprintf(
		"server = %s\n\n[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n", server, server)))

	write(filepath.Join(*worker, "containerd.toml"), []byte(fmt.Sprintf(`version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  disable_apparmor = true
  # Root without CAP_SYS_RESOURCE cannot set a negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %s
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = %s

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %s
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %s
`, tomlString(*runc), tomlString(filepath.Join(*worker, "cni")), tomlString(*sandbox),
		tomlString(filepath.Join(*worker, "certs.d")))))

	// The pods' only name server: their own loopback. The host's resolver
	// (on a private address) is never handed to a pod.
	write(filepath.Join(*worker, "resolv.conf"), []byte("nameserver 127.0.0.1\n"))

	// JSON is YAML: the kubelet reads this file as its --config.
	writeJSON(filepath.Join(*worker, "kubelet-config.json"), map[string]any{
		"apiVersion":         "kubelet.config.k8s.io/v1beta1",
		"kind":               "KubeletConfiguration",
		"address":            *nodeIP,
		"port":               *kubeletPort,
		"readOnlyPort":       0,
		"healthzBindAddress": "127.0.0.1",
		"healthzPort":        *healthzPort,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": filepath.Join(*cluster, "pki", "ca.crt")},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
		// These VMs: cgroup v1 without systemd, no swap, no
		// CAP_SYS_RESOURCE (no negative oom_score_adj).
		"failCgroupV1": false,
		"cgroupDriver": "cgroupfs",
		"cgroupRoot":   "/sandlet-" + *id,
		"failSwapOn":   false,
		"oomScoreAdj":  0,
		// No iptables rules; the kernel settings it rewrites are saved and
		// restored by scripts/worker.
		"makeIPTablesUtilChains": false,
		"protectKernelDefaults":  false,
		"resolvConf":             filepath.Join(*worker, "resolv.conf"),
		"volumePluginDir":        filepath.Join(*worker, "volume-plugins"),
		// A test machine's disk is shared: never evict for it, never
		// collect the images the tests pull.
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"evictionHard": map[string]string{
			"memory.available": "100Mi", "nodefs.available": "1%",
			"imagefs.available": "1%", "nodefs.inodesFree": "1%",
		},
		"serializeImagePulls": false,
		"registerNode":        true,
	})
}
