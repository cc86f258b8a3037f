#!/usr/bin/env bash
# Installs everything the test suite and the demo need on a fresh Debian 12 machine (run as root),
# and is quick when everything is already there. Prints `export` lines for the environment to use
# when called with --print-env.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FEDIOPS_CACHE:-$HOME/.cache/fediops-mastodon}
image=${FEDIOPS_NODE_IMAGE:-localhost/fediops-debian:12}
mkdir -p "$cache"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

apt_packages=(
  docker.io debootstrap rsync openssl git shellcheck
  ruby ruby-dotenv ruby-pg ruby-redis
  ruby-activerecord ruby-railties bundler
  postgresql redis-server pgbouncer
)

install_apt_packages() {
  local missing=() pkg
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$cache/apt.log" 2>&1
  # policy-rc.d keeps package scripts from starting services; the tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$cache/apt.log" 2>&1 || {
    tail -30 "$cache/apt.log" >&2; rm -f /usr/sbin/policy-rc.d; return 1; }
  rm -f /usr/sbin/policy-rc.d
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
  python3 "$repo/tests/cluster/localcluster.py" build >&2
}

main() {
  install_apt_packages
  start_docker
  build_node_image
  install_venv
  install_ansible_test_pip_bootstrap
  install_node_packages
  build_cluster_binaries
  if [ "${1:-}" = "--print-env" ]; then
    echo "export FEDIOPS_CACHE='$cache'"
    echo "export PATH='$cache/venv/bin':\"\$PATH\""
    echo "export FEDIOPS_NODE_IMAGE='$image'"
    [ -d "$cache/node/node_modules" ] && echo "export NODE_PATH='$cache/node/node_modules'"
  fi
  return 0
}

main "$@"
