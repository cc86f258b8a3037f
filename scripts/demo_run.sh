#!/usr/bin/env bash
# `make demo` (through scripts/demo.sh): starts (or reuses) the local Kubernetes cluster and the DigitalOcean API
# stand-in, deploys the whole Mastodon stack with `ansible-playbook playbooks/deploy.yml -e @playbooks/vars/demo.yml`,
# reads it back with playbooks/status.yml and prints a summary with what to try next. Everything is LEFT RUNNING;
# a second `make demo` reuses it and shows an idempotent re-run (changed=0).
# `make demo-down` (scripts/demo_run.sh --down) stops the cluster and the stand-in and checks that no process is left.
# State: $FEDIOPS_CACHE/demo (cluster/, standin/, collections/, env.sh, logs).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FEDIOPS_CACHE:-$HOME/.cache/fediops-mastodon}
demo=$cache/demo
cluster_state=$demo/cluster
standin=$demo/standin
vars_file=playbooks/vars/demo.yml
started=$(date +%s)

# Progress goes to stderr, so that it shows while a step's output is captured.
say() { printf '==> [%3ss] %s\n' "$(( $(date +%s) - started ))" "$*" >&2; }

# The stand-in is started and stopped by the molecule scenarios' script (it records its pid in the state dir).
standin_script=$repo/molecule/default/standin.sh

standin_running() {
  local pid
  pid=$(cat "$standin/standin.pid" 2>/dev/null) && grep -qa do_standin "/proc/$pid/cmdline" 2>/dev/null
}

down() {
  local pid left=()
  if standin_running; then
    say "stopping the DigitalOcean API stand-in (pid $(cat "$standin/standin.pid"))"
  fi
  bash "$standin_script" stop "$standin"
  if [ -f "$cluster_state/pids.json" ]; then
    say "stopping the local Kubernetes cluster"
    python3 "$repo/tests/cluster/localcluster.py" stop --state-dir "$cluster_state"
  fi
  # Every process the demo started had its pid recorded; none may be left.
  for pid in $(python3 -c 'import json,sys
try:
    data = json.load(open(sys.argv[1]))
except OSError:
    data = {}
print(" ".join(str(p["pid"]) for p in data.get("processes", {}).values()))' "$cluster_state/pids.json"); do
    kill -0 "$pid" 2>/dev/null && left+=("$pid")
  done
  if pgrep -f "do_standin --fixtures $standin/" >/dev/null; then left+=(stand-in); fi
  if [ ${#left[@]} -gt 0 ]; then
    echo "make demo-down: still running: ${left[*]}" >&2
    return 1
  fi
  say "the demo is stopped; no process of it is left (state kept in $demo; rm -rf it to start afresh)"
}

if [ "${1:-}" = "--down" ]; then
  down
  exit
fi

# A background ticker shows that a long step is still working, with its elapsed time.
run_step() {  # run_step LABEL COMMAND...
  local label=$1 t0 ticker status=0
  shift
  t0=$(date +%s)
  say "$label"
  ( while sleep 20; do printf '    ... still %s (%ss)\n' "$label" "$(( $(date +%s) - t0 ))" >&2; done ) >/dev/null &
  ticker=$!  # (its stdout is not the step's: a captured step's pipe closes when the step ends)
  "$@" || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  [ "$status" = 0 ] && printf '    done in %ss\n' "$(( $(date +%s) - t0 ))" >&2
  return "$status"
}

mkdir -p "$demo" "$standin"
cd "$repo"

# 1. The local cluster: reused when it is running, else started fresh (built first on a cold cache, with progress).
kubeconfig=$(run_step "local Kubernetes cluster ($cluster_state)" \
  python3 tests/cluster/localcluster.py start --state-dir "$cluster_state" | tail -n 1)
export KUBECONFIG=$kubeconfig K8S_AUTH_KUBECONFIG=$kubeconfig

# 2. The DigitalOcean API stand-in (HTTPS on loopback): reused when it is running. Its fixtures (database
# clusters, their CA) are generated once and kept, so a re-run sees the same CA.
if standin_running; then
  say "reusing the DigitalOcean API stand-in (pid $(cat "$standin/standin.pid"))"
else
  say "starting the DigitalOcean API stand-in"
fi
base_url=$(bash "$standin_script" start "$standin")

# 3. This checkout as the collection fediops.mastodon, and an env file that makes every printed command work.
mkdir -p "$demo/collections/ansible_collections/fediops"
ln -sfn "$repo" "$demo/collections/ansible_collections/fediops/mastodon"
venv_bin=$(dirname "$(command -v ansible-playbook)")
umask 077
cat >"$demo/env.sh" <<EOF
# Written by make demo: the environment of the demo's commands (source it in your shell).
export PATH='$venv_bin':"\$PATH"
export KUBECONFIG='$kubeconfig' K8S_AUTH_KUBECONFIG='$kubeconfig'
export ANSIBLE_COLLECTIONS_PATH='$demo/collections'
export FEDIOPS_DO_API_BASE_URL='$base_url' FEDIOPS_DO_CA_PATH='$standin/ca.pem'
export DIGITALOCEAN_ACCESS_TOKEN="\$(cat '$standin/token')"
export ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
EOF
umask 022
# shellcheck source=/dev/null
source "$demo/env.sh"
# Quiet output: only changed and failed tasks (errors in full, as YAML), then the recap.
export ANSIBLE_DISPLAY_OK_HOSTS=false ANSIBLE_DISPLAY_SKIPPED_HOSTS=false ANSIBLE_CALLBACK_RESULT_FORMAT=yaml
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}

# 4. The deploy.
run_step "ansible-playbook playbooks/deploy.yml -e @$vars_file" \
  ansible-playbook playbooks/deploy.yml -e @"$vars_file" 2>&1 | tee "$demo/deploy.log" | grep -v '^$'
recap=$(grep -E '^localhost +:' "$demo/deploy.log" | tail -n 1)

# 5. What runs now, and the summary.
ANSIBLE_STDOUT_CALLBACK=ansible.builtin.json ansible-playbook playbooks/status.yml -e @"$vars_file" \
  >"$demo/status.json" 2>"$demo/status.log" || { cat "$demo/status.log" "$demo/status.json" >&2; exit 1; }
kubectl get ingress,service,configmap,secret -n "$(python3 -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["config_namespace"])' "$vars_file")" \
  -o json >"$demo/objects.json"
python3 scripts/demo_summary.py --vars "$vars_file" --status "$demo/status.json" --objects "$demo/objects.json" \
  --recap "$recap" --env-file "$demo/env.sh" --repo "$repo" --base-url "$base_url" --seconds "$(( $(date +%s) - started ))"
