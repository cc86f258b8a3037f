#!/usr/bin/env bash
# `make build`: the collection tarball, plus the requirements file of the execution environment that names it.
#   bash scripts/build_collection.sh [OUTPUT-DIR]     (default: build/)
# meta/execution-environment.yml takes its collections from OUTPUT-DIR/ee-requirements.yml, a file that exists only
# next to a built tarball: without it `ansible-builder create` stops with "Dependency file ... does not exist"
# instead of only warning that the tarball is missing and producing a build context without the collection.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mkdir -p "${1:-$repo/build}" && cd "${1:-$repo/build}" && pwd)
version=$(sed -n 's/^version: *//p' "$repo/galaxy.yml" | tr -d "\"'")
tarball=fediops-mastodon-$version.tar.gz
rm -f "$out/ee-requirements.yml"
ansible-galaxy collection build --force --output-path "$out" "$repo"
[ -s "$out/$tarball" ] || { echo "build_collection: $out/$tarball was not written" >&2; exit 1; }
cat >"$out/ee-requirements.yml" <<YAML
---
# Written by scripts/build_collection.sh next to $tarball (meta/execution-environment.yml: dependencies.galaxy).
collections:
  - name: collections/$tarball
    type: file
YAML
echo "$out/$tarball ($(du -k "$out/$tarball" | cut -f1) KiB) and $out/ee-requirements.yml"
