#!/usr/bin/env bash
# Installs what one command of the Makefile needs on a fresh Debian 12 machine (run as root), and is
# quick when everything is already there:
#   bash scripts/setup.sh [--for test|demo|docs|bench|build] [--print-env]
#   test   everything (default): Docker engine + local Debian image, PostgreSQL, PgBouncer, Redis, ruby,
#          node packages, chromium, the venv, Go and the local Kubernetes binaries
#   demo   the venv, Go, kubectl and the local Kubernetes binaries (no Docker, no database servers)
#   bench  as demo
#   docs   the venv and chromium (for the docs' browser check)
#   build  the venv (ansible-galaxy)
# --print-env prints `export` lines for the environment to use (PATH with the venv and Go).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FEDIOPS_CACHE:-$HOME/.cache/fediops-mastodon}
image=${FEDIOPS_NODE_IMAGE:-localhost/fediops-debian:12}
mkdir -p "$cache"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Go >= this builds the local Kubernetes (tests/cluster/go.mod says `go 1.24.0`). When the system's go is older
# (Debian 12's golang-go is 1.19) or missing, the setup takes Go's own toolchain module from the Go module proxy
# (golang.org/toolchain, the module `GOTOOLCHAIN` switching downloads) with `go mod download`.
go_minimum=1.24
go_toolchain=go1.25.14
go_bin_dir=

# apt packages by purpose; `common` goes with every purpose.
apt_common=(openssl rsync git)
apt_test=(docker.io debootstrap shellcheck ruby ruby-dotenv ruby-pg ruby-redis ruby-activerecord ruby-railties bundler
          postgresql redis-server pgbouncer chromium fonts-dejavu-core)
apt_docs=(chromium fonts-dejavu-core)

elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

install_apt_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local t0; t0=$(date +%s)
  log "apt-get install ${missing[*]} (a minute or two)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$cache/apt.log" 2>&1
  # policy-rc.d keeps package scripts from starting services; the tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$cache/apt.log" 2>&1 || {
    tail -30 "$cache/apt.log" >&2; rm -f /usr/sbin/policy-rc.d; return 1; }
  rm -f /usr/sbin/policy-rc.d
  log "apt packages installed in $(elapsed "$t0")"
}

go_version_ok() {  # go_version_ok GO-BINARY
  local have
  have=$("$1" env GOVERSION 2>/dev/null || "$1" version 2>/dev/null | awk '{print $3}') || return 1
  have=${have#go}
  [ "$(printf '%s\n%s\n' "$go_minimum" "$have" | sort -V | head -1)" = "$go_minimum" ]
}

ensure_go() {
  local system_go dir="$cache/go/$go_toolchain" t0
  system_go=$(command -v go || true)
  if [ -n "$system_go" ] && go_version_ok "$system_go"; then return 0; fi
  if [ -x "$dir/bin/go" ] && go_version_ok "$dir/bin/go"; then go_bin_dir=$dir/bin; return 0; fi
  t0=$(date +%s)
  if [ -z "$system_go" ]; then
    install_apt_packages golang-go
    system_go=$(command -v go)
  fi
  log "system Go is $("$system_go" version | awk '{print $3}') (< $go_minimum): fetching $go_toolchain" \
      "as the Go module golang.org/toolchain"
  local modcache="$cache/go/.modcache" module arch src
  arch=$(dpkg --print-architecture)
  module="golang.org/toolchain@v0.0.1-$go_toolchain.linux-$arch"
  src=$(cd /tmp && env -u GOFLAGS GOTOOLCHAIN=local GOMODCACHE="$modcache" GOPATH="$cache/go/.gopath" \
        "$system_go" mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$src" ] || [ ! -d "$src" ]; then log "go mod download $module failed"; return 1; fi
  rm -rf "$dir.tmp" && cp -r "$src" "$dir.tmp" && chmod -R u+w "$dir.tmp"
  # A module zip keeps no file modes; the go command's own toolchain switch sets them the same way.
  chmod +x "$dir.tmp"/bin/* "$dir.tmp"/pkg/tool/*/*
  chmod -R u+w "$modcache" && rm -rf "$modcache" "$cache/go/.gopath"
  mv "$dir.tmp" "$dir"
  go_bin_dir=$dir/bin
  log "Go $("$dir/bin/go" version | awk '{print $3}') in $dir ($(elapsed "$t0"))"
}

ensure_kubectl() {
  # To look at the demo's cluster. Debian 12 ships kubectl 1.20 in kubernetes-client: old, but enough for
  # `kubectl get`; a newer kubectl already in PATH is kept.
  command -v kubectl >/dev/null 2>&1 || install_apt_packages kubernetes-client
}

start_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  log "starting dockerd (no bridge, no iptables)"
  setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false \
    >>"$cache/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  log "dockerd did not answer within 60 s; see $cache/dockerd.log"
  tail -20 "$cache/dockerd.log" >&2
  return 1
}

build_node_image() {
  if docker image inspect "$image" >/dev/null 2>&1; then return 0; fi
  local rootfs="$cache/rootfs-bookworm" mirror
  mirror=$( { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
              grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } \
    | grep -v security | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "debootstrap bookworm from $mirror (about a minute)"
  rm -rf "$rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-apt,sudo,procps,iproute2,systemd,systemd-sysv,dbus \
    bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
      tail -20 "$cache/debootstrap.log" >&2; return 1; }
  cp -a /etc/apt/sources.list.d/. "$rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/lib/apt/lists/* && touch -d @0 "$rootfs/var/lib/apt/lists"
  tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import \
    --change 'ENV container=docker' --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
  rm -rf "$rootfs"
  log "built image $image"
}

venv_dir() {
  # Keyed by the requirements, so checkouts with different requirements use different venvs side by side.
  local key
  key=$(cat "$repo/requirements.txt" "$repo/tests/requirements.txt" "$repo/tests/constraints.txt" \
    | sha256sum | cut -c1-12)
  echo "$cache/venv-$key"
}

install_venv() {
  local venv
  venv=$(venv_dir)
  if [ -x "$venv/bin/ansible-test" ] && [ -f "$venv/.complete" ]; then
    ln -sfn "$venv" "$cache/venv"; return 0
  fi
  log "creating venv $venv"
  rm -rf "$venv"
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
  (cd "$repo/tests" && "$venv/bin/pip" install -q --disable-pip-version-check \
    -r requirements.txt -c constraints.txt) >&2
  touch "$venv/.complete"
  ln -sfn "$venv" "$cache/venv"
}

install_ansible_test_pip_bootstrap() {
  # ansible-test --venv downloads a pip bootstrap script from a host we cannot reach; give it a
  # local one that installs pip from the package index instead.
  local version
  version=$("$cache/venv/bin/python" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
print(get_venv_packages(NativePythonConfig(version='3.11', path='/usr/bin/python3'))['pip'])
PY
)
  mkdir -p "$HOME/.ansible/test/cache"
  install -m 0644 "$repo/scripts/get_pip_offline.py" \
    "$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
}

install_node_packages() {
  local lock="$repo/tests/node/package-lock.json" key dir
  [ -f "$lock" ] || return 0
  key=$(cat "$repo/tests/node/package.json" "$lock" | sha256sum | cut -c1-12)
  dir="$cache/node-$key"
  if [ ! -f "$dir/.complete" ]; then
    log "npm ci (tests/node)"
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$repo/tests/node/package.json" "$lock" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
    touch "$dir/.complete"
  fi
  ln -sfn "$dir" "$cache/node"
}

build_cluster_binaries() {
  [ -f "$repo/tests/cluster/localcluster.py" ] || return 0
  # Progress with elapsed times goes to stderr; a cold build takes minutes (see tests/cluster/README.md).
  PATH=${go_bin_dir:+$go_bin_dir:}$PATH python3 "$repo/tests/cluster/localcluster.py" build >/dev/null
}

fetch_gateway_api_crds() {
  # The Gateway API CRDs (HTTPRoute) for the tests that deploy with an HTTPRoute: from the Go module proxy
  # (the Go module sigs.k8s.io/gateway-api), cached under $FEDIOPS_CACHE/gateway-api.
  [ -f "$repo/tests/cluster/localcluster.py" ] || return 0
  PATH=${go_bin_dir:+$go_bin_dir:}$PATH FEDIOPS_CACHE=$cache python3 "$repo/tests/cluster/localcluster.py" \
    fetch-gateway-api >/dev/null
}

main() {
  local purpose=test print_env=0
  while [ $# -gt 0 ]; do
    case $1 in
      --print-env) print_env=1 ;;
      --for) purpose=${2:?--for needs test, demo, docs, bench or build}; shift ;;
      --for=*) purpose=${1#--for=} ;;
      *) echo "usage: $0 [--for test|demo|docs|bench|build] [--print-env]" >&2; return 2 ;;
    esac
    shift
  done
  case $purpose in
    test)
      install_apt_packages "${apt_common[@]}" "${apt_test[@]}"
      start_docker
      build_node_image
      install_venv
      install_ansible_test_pip_bootstrap
      install_node_packages
      ensure_go
      ensure_kubectl
      build_cluster_binaries
      fetch_gateway_api_crds ;;
    demo|bench)
      install_apt_packages "${apt_common[@]}"
      install_venv
      ensure_go
      ensure_kubectl
      build_cluster_binaries ;;
    docs)
      install_apt_packages "${apt_common[@]}" "${apt_docs[@]}"
      install_venv ;;
    build)
      install_venv ;;
    *) echo "$0: --for $purpose: expected test, demo, docs, bench or build" >&2; return 2 ;;
  esac
  if [ "$print_env" = 1 ]; then
    echo "export FEDIOPS_CACHE='$cache'"
    local path_dirs
    path_dirs=$(venv_dir)/bin${go_bin_dir:+:$go_bin_dir}
    echo "export PATH='$path_dirs':\"\$PATH\""
    echo "export FEDIOPS_NODE_IMAGE='$image'"
    [ -d "$cache/node/node_modules" ] && echo "export NODE_PATH='$cache/node/node_modules'"
  fi
  return 0
}

main "$@"
