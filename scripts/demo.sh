#!/usr/bin/env bash
# `make demo`: deploys the whole Mastodon stack (config, migrations, web, streaming, sidekiq) with
# playbooks/deploy.yml to a local real Kubernetes cluster, with the DigitalOcean API stand-in
# answering for a database cluster, then prints what was created.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
missing=()
for part in playbooks/deploy.yml tests/cluster/localcluster.py; do
  [ -e "$repo/$part" ] || missing+=("$part")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "make demo: not available yet; missing: ${missing[*]}" >&2
  echo "(the deploy playbook and roles land with the roles issue; the local cluster with the cluster issue)" >&2
  exit 2
fi
exec bash "$repo/scripts/demo_run.sh"
