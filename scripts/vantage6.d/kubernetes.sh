# shellcheck shell=bash
# The Kubernetes side of scripts/vantage6 (sourced by it): the control plane
# in DIR/cluster, a loopback OCI registry holding the federated-mean
# algorithm (algorithms/vantage6-mean) as V6_MEAN_IMAGE, and per
# organisation of DIR/nodes.tsv a data station: a `sandlet node` named after
# the organisation with a generated patients dataset, the task namespace
# v6-ORG routed to that node (PodNodeSelector and PodTolerationRestriction
# annotations: vantage6's Jobs carry no selector or tolerations) and granted
# the dataset by default (the station file's defaultGrants), and the
# unmodified vantage6 node of the organisation with a ServiceAccount that
# may run its tasks there and nothing more.
#
# SANDLET_BIN and SANDLET_V6_MODULE name a sandlet binary and a built
# vantage6-mean component to use instead of building them (the tests set
# both, as for scripts/demo). SANDLET_V6_WORKER=1 also adds a container
# worker, v6-worker, and pushes V6_CONTAINER_IMAGE, a trivial container of
# vantage6's task contract (it writes a fixed result), which the vantage6
# nodes also allow: the benchmark routes the task namespaces to the worker
# to time the same task as container Jobs (benches/vantage6.rs).

# The rows of each organisation's generated dataset, in DIR/nodes.tsv order.
V6_ROWS=(240 360 300)

sandlet_binary() {
    if [ -n "${SANDLET_BIN:-}" ]; then
        printf '%s\n' "$SANDLET_BIN"
        return
    fi
    say "building sandlet"
    (cd "$root" && cargo build --locked --quiet --bin sandlet) >&2
    printf '%s\n' "$CARGO_TARGET_DIR/debug/sandlet"
}

v6_mean_module() {
    if [ -n "${SANDLET_V6_MODULE:-}" ]; then
        printf '%s\n' "$SANDLET_V6_MODULE"
        return
    fi
    say "building the vantage6-mean algorithm for wasm32-wasip2"
    cargo build --quiet --release --target wasm32-wasip2 \
        --manifest-path "$root/algorithms/vantage6-mean/Cargo.toml" \
        --target-dir "$SANDLET_WASM_TARGET_DIR" >&2
    printf '%s\n' "$SANDLET_WASM_TARGET_DIR/wasm32-wasip2/release/vantage6_mean.wasm"
}

# station_patients FILE ROWS SEED: a patients CSV (id, age, sex, bmi, ssn).
station_patients() {
    awk -v n="$2" -v seed="$3" 'BEGIN {
        srand(seed); print "id,age,sex,bmi,ssn"
        for (id = 0; id < n; id++) {
            printf "%d,%d,%s,%.2f,%d\n", id, 18 + int(rand() * 70), (rand() < 0.5 ? "f" : "m"),
                16 + rand() * 20, 100000000 + int(rand() * 899999999)
        }
    }' >"$1"
}

# The RBAC of a vantage6 node whose tasks run in namespace $1: what its code
# calls (its Kubernetes client creates and deletes the Jobs, Pods and
# Secrets of its tasks and reads their logs), in that namespace only, and
# reading namespaces (it checks its task namespace exists).
v6_node_rbac() {
    cat <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: vantage6-node, namespace: $1}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: vantage6-node, namespace: $1}
rules:
- {apiGroups: [""], resources: [pods], verbs: [create, delete, get, list, watch]}
- {apiGroups: [""], resources: [pods/log], verbs: [get]}
- {apiGroups: [""], resources: [secrets], verbs: [create, delete]}
- {apiGroups: [batch], resources: [jobs], verbs: [create, delete, get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: vantage6-node, namespace: $1}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vantage6-node}
subjects: [{kind: ServiceAccount, name: vantage6-node, namespace: $1}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: vantage6-node-namespaces}
rules:
- {apiGroups: [""], resources: [namespaces], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vantage6-node-$1}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: vantage6-node-namespaces}
subjects: [{kind: ServiceAccount, name: vantage6-node, namespace: $1}]
YAML
}

# v6_worker DIR: the container worker v6-worker and the trivial container
# image pushed to its registry; prints the image's reference.
v6_worker() {
    local dir=$1 rootfs="$1/trivial-rootfs"
    "$root/scripts/cluster" worker "$dir/cluster" v6-worker >&2
    rm -rf "$rootfs"
    mkdir -p "$rootfs/bin"
    cp /bin/busybox "$rootfs/bin/busybox"
    ln -s busybox "$rootfs/bin/sh"
    cat >"$rootfs/trivial.sh" <<'SH'
#!/bin/sh
# vantage6's task contract at its most trivial: a fixed result in the output file.
echo "info > a trivial container"
printf '{"sum": 0.0, "count": 0}' >/app/vantage6/task/output
SH
    chmod 755 "$rootfs/trivial.sh"
    "$root/scripts/worker" push "$dir/cluster" v6/trivial 1.0 "$rootfs" --entrypoint /trivial.sh
}

# The regular expression vantage6's allow-list takes for the v6/ algorithms
# of registry $1 (it is one because it holds `^`).
v6_pattern() {
    printf '^%s/v6/' "${1//./\\.}"
}

# start_station DIR N ORG NODE SANDLET REGISTRY [PATTERN]: the data station
# of organisation ORG (the N-th of DIR/nodes.tsv) and its vantage6 node
# NODE, which allows the v6/ algorithms of REGISTRY (and PATTERN).
start_station() {
    local dir=$1 n=$2 org=$3 node=$4 sandlet=$5 registry=$6 extra=${7:-}
    local station="$dir/stations/$org" ns="v6-$org" kubeconfig token pattern
    mkdir -p "$station"
    station_patients "$station/patients.csv" "${V6_ROWS[$n]:-300}" "$((n + 21))"
    cat >"$station/station.yaml" <<YAML
# Data station $org: its dataset, granted by default to vantage6's task
# namespace $ns, and only algorithms from $registry/v6/ may run.
datasets:
  - name: patients
    source: { csv: patients.csv }
    policy:
      allowedColumns: [age, sex, bmi]
      allowedNamespaces: [$ns]
defaultGrants:
  - namespace: $ns
    datasets: [patients]
modules:
  allow:
    - repository: $registry/v6/*
YAML
    kubeconfig=$("$root/scripts/cluster" node-credentials "$dir/cluster" "$org")
    say "starting data station $org (sandlet node $org, ${V6_ROWS[$n]:-300} patients)"
    start_component "$dir" "sandlet-$org" "$sandlet" node --kubeconfig "$kubeconfig" --node-name "$org" \
        --config "$station/station.yaml" --address 127.0.0.1 --port "$(free_port)" \
        --state-dir "$station/state" --runtime-dir "$station/run" --insecure-registry "$registry"
    kubectl wait --for=condition=Ready "node/$org" --timeout=120s >/dev/null ||
        die "sandlet node $org is not Ready (see $dir/logs/sandlet-$org.log)"

    kubectl create namespace "$ns" >/dev/null
    kubectl annotate namespace "$ns" >/dev/null \
        "scheduler.alpha.kubernetes.io/node-selector=kubernetes.io/hostname=$org" \
        'scheduler.alpha.kubernetes.io/defaultTolerations=[{"key":"kubernetes.io/arch","operator":"Equal","value":"wasm32-wasi","effect":"NoSchedule"},{"key":"kubernetes.io/arch","operator":"Equal","value":"wasm32-wasi","effect":"NoExecute"}]'
    v6_node_rbac "$ns" | kubectl apply -f - >/dev/null
    token="$dir/nodes/$node/k8s-token"
    mkdir -p "$dir/nodes/$node"
    (umask 077 && kubectl create token vantage6-node -n "$ns" --duration=48h >"$token")
    # vantage6 matches its allow-list as a regular expression when it holds
    # one of its special characters: only this registry's v6/ algorithms.
    pattern="'$(v6_pattern "$registry")'"
    [ -z "$extra" ] || pattern+=", '$extra'"
    V6_NODE_EXTRA_CONFIG="policies:
  allowed_algorithms: [$pattern]" \
        start_v6_node "$dir" "$node" "$(cat "$dir/nodes/$node/api-key")" "$SANDLET_API_SERVER" \
        "$SANDLET_CLUSTER_CA" "$token" "$ns"
    printf '%s\n' "$station/patients.csv" >>"$dir/stations/datasets"
}

kubernetes_up() {
    local dir=$1 sandlet module registry image n=0 org_id org node datasets line
    sandlet=$(sandlet_binary)
    module=$(v6_mean_module)
    [ -x "$sandlet" ] || die "no sandlet binary at $sandlet"
    [ -f "$module" ] || die "no vantage6-mean component at $module"
    # No watchdog of its own: scripts/vantage6's stops the cluster with the
    # rest, and none is left once `down` has run.
    SANDLET_CLUSTER_OWNER="" "$root/scripts/cluster" up "$dir/cluster"
    # shellcheck disable=SC1091
    source "$dir/cluster/env"

    registry="127.0.0.1:$(free_port)"
    say "starting an OCI registry (docker-registry) on $registry"
    mkdir -p "$dir/registry"
    cat >"$dir/registry/config.yml" <<YAML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $dir/registry/data } }
http: { addr: $registry }
YAML
    start_component "$dir" registry docker-registry serve "$dir/registry/config.yml"
    wait_ready "$dir" registry "http://$registry/v2/" 30
    image="$registry/v6/mean:1.0"
    say "pushing vantage6-mean to $image"
    "$sandlet" push --insecure-registry "$registry" "$module" "$image" >/dev/null

    local container_image="" worker_pattern=""
    if [ "${SANDLET_V6_WORKER:-0}" = 1 ]; then
        container_image=$(v6_worker "$dir")
        worker_pattern=$(v6_pattern "${container_image%%/*}")
    fi

    mkdir -p "$dir/stations"
    : >"$dir/stations/datasets"
    local stations=()
    mapfile -t stations <"$dir/nodes.tsv"
    for line in "${stations[@]}"; do
        IFS=$'\t' read -r org_id org node <<<"$line"
        [ -n "$node" ] || continue
        start_station "$dir" "$n" "$org" "$node" "$sandlet" "$registry" "$worker_pattern"
        n=$((n + 1))
    done
    datasets=$(paste -sd, "$dir/stations/datasets")
    cat >>"$dir/env" <<ENV
export V6_DATASETS="$datasets"
export V6_MEAN_IMAGE="$image"
export KUBECONFIG="$KUBECONFIG"
ENV
    [ -z "$container_image" ] || echo "export V6_CONTAINER_IMAGE=\"$container_image\"" >>"$dir/env"
    say "waiting for the vantage6 nodes to come online at HQ"
    (
        # shellcheck disable=SC1091
        source "$dir/env"
        "$dir/bin/python" "$here/wait-nodes.py" 180
    ) >"$dir/logs/wait-nodes.log" 2>&1 ||
        { tail -n 30 "$dir/logs/wait-nodes.log" >&2; die "the vantage6 nodes did not come online; the log is above"; }
}

# Stops what kubernetes_up started but DIR/pids does not hold: the control
# plane (the registry and the sandlet nodes are in DIR/pids, stopped first).
kubernetes_down() {
    local dir=$1
    [ ! -d "$dir/cluster" ] || "$root/scripts/cluster" down "$dir/cluster"
}
