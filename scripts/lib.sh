# Shared by scripts/*: where caches live and how to install what is missing.
# Source it; it defines functions and variables only.

# Heavy caches live outside the clone so that every clone (and CI) reuses them.
SANDLET_CACHE="${SANDLET_CACHE:-$HOME/.cache/sandlet}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SANDLET_CACHE/target}"
export SANDLET_WASM_TARGET_DIR="${SANDLET_WASM_TARGET_DIR:-$SANDLET_CACHE/wasm-target}"
# Native, statically linked guest-side binaries (container images).
export SANDLET_NATIVE_TARGET_DIR="${SANDLET_NATIVE_TARGET_DIR:-$SANDLET_CACHE/native-target}"
mkdir -p "$SANDLET_CACHE"

say() { printf '==> %s\n' "$*" >&2; }

# Rust toolchain pieces: the wasm targets the guests are built for, and the
# linters the tests run.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        say "cargo not found: install Rust with rustup first (https://rustup.rs)"
        exit 1
    fi
    local installed
    installed=$(rustup target list --installed 2>/dev/null || true)
    for target in wasm32-wasip2 wasm32-wasip1; do
        if ! grep -qx "$target" <<<"$installed"; then
            say "installing the Rust target $target"
            rustup target add "$target"
        fi
    done
    # OpenDP draws its noise from OpenSSL, linked from the system.
    ensure_commands pkg-config:pkg-config
    if ! pkg-config --exists openssl 2>/dev/null; then
        ensure_commands __sandlet_libssl_dev:libssl-dev
    fi
    local components
    components=$(rustup component list --installed 2>/dev/null || true)
    for component in rustfmt clippy; do
        if ! grep -q "^$component" <<<"$components"; then
            say "installing the Rust component $component"
            rustup component add "$component"
        fi
    done
}

# ensure_commands CMD:PACKAGE...: installs with apt-get the Debian package of
# each command that is missing.
ensure_commands() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    if ((${#missing[@]})); then
        say "installing Debian packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Debian packages the tests and the demo use: the OCI registry (CNCF
# distribution), htpasswd for its basic auth, openssl for test CAs and keys,
# curl and python3 for the control-plane harness, age to open sealed results
# as a requester would, PostgreSQL for database datasets.
ensure_debian_packages() {
    ensure_commands docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl \
        curl:curl python3:python3 setpriv:util-linux age:age
    ensure_postgres
}

# PostgreSQL's server for the database-backed datasets (scripts/postgres);
# its binaries live under /usr/lib/postgresql/<version>/bin, off PATH.
ensure_postgres() {
    if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        ensure_commands __sandlet_postgres_server:postgresql
    fi
}

# The Go-built components are pinned by checked-in modules under
# tests/harness/modules/ (a go.mod and go.sum each, built with
# -mod=readonly). module_version DIR MODULE prints the version DIR's go.mod
# requires of MODULE; module_key DIR a short digest of go.mod and go.sum,
# which names the component's cache directory, so a bump rebuilds it.
module_version() {
    local version
    version=$(awk -v m="$2" '$1 == "require" && $2 == m { print $3; exit } $1 == m { print $2; exit }' "$1/go.mod")
    [ -n "$version" ] || { say "$1/go.mod requires no $2"; exit 1; }
    printf '%s\n' "$version"
}

module_key() {
    cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-12
}

# component_home NAME DIR MODULE: where the component built from the module
# in DIR is cached, $SANDLET_CACHE/NAME/v<version>-<key>.
component_home() {
    local version
    version=$(module_version "$2" "$3") || exit 1
    printf '%s\n' "$SANDLET_CACHE/$1/v${version#v}-$(module_key "$2")"
}

# A free TCP port on loopback (the kernel picks it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_process PIDS LOG NAME CMD...: runs CMD in its own session, logging to
# LOG, and appends "PID NAME" to the file PIDS. The process records its own
# pid: `$!` would be setsid's, which forks when it is started as a process
# group leader, and a `down` would then miss it. Returns 1 if it did not start.
start_process() {
    local pids=$1 log=$2 name=$3 i
    shift 3
    touch "$pids"
    setsid bash -c 'echo "$$ $0" >>"$1"; shift; exec "$@"' "$name" "$pids" "$@" \
        >"$log" 2>&1 </dev/null &
    for ((i = 0; i < 100; i++)); do
        awk -v n="$name" '$2 == n { found = 1 } END { exit !found }' "$pids" && return 0
        sleep 0.05
    done
    return 1
}

# stop_processes PIDS: stops every process in PIDS, last started first
# (TERM to its process group, KILL after 10 s), then removes PIDS.
stop_processes() {
    local file=$1 pid name pids=() i
    [ -f "$file" ] || return 0
    while read -r pid name; do pids=("$pid" "${pids[@]}"); done <"$file"
    for pid in "${pids[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || continue 2
            sleep 0.1
        done
        say "could not stop process $pid (from $file)"
    done
    rm -f "$file"
}
