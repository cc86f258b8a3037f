#!/usr/bin/env bash
# `make demo` (through scripts/demo.sh): starts the local Kubernetes cluster and the DigitalOcean API stand-in,
# deploys the whole Mastodon stack with playbooks/deploy.yml and playbooks/vars/demo.yml, prints what was created,
# and stops everything it started.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FEDIOPS_CACHE:-$HOME/.cache/fediops-mastodon}
cluster_state=$cache/demo-cluster
work=$(mktemp -d "${TMPDIR:-/tmp}/fediops-demo.XXXXXX")
namespace=mastodon-demo
cluster_started=0
standin_pid=

cleanup() {
  status=$?
  if [ -n "$standin_pid" ] && kill -0 "$standin_pid" 2>/dev/null; then
    kill "$standin_pid" 2>/dev/null || true
    wait "$standin_pid" 2>/dev/null || true
  fi
  if [ "$cluster_started" = 1 ]; then
    echo "==> stopping the local cluster"
    python3 "$repo/tests/cluster/localcluster.py" stop --state-dir "$cluster_state" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM

echo "==> starting the local Kubernetes cluster ($cluster_state)"
kubeconfig=$(python3 "$repo/tests/cluster/localcluster.py" start --state-dir "$cluster_state" | tail -n 1)
cluster_started=1
export KUBECONFIG=$kubeconfig K8S_AUTH_KUBECONFIG=$kubeconfig

echo "==> starting the DigitalOcean API stand-in"
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj /CN=demo-standin-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
    -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext \
    -out server.pem 2>/dev/null
)
PYTHONPATH="$repo/tests/support${PYTHONPATH:+:$PYTHONPATH}" python3 -m do_standin --fixtures "$work/fixtures.json" \
  --cert "$work/server.pem" --key "$work/server.key" --token-file "$work/token" \
  >"$work/standin.json" 2>"$work/standin.log" </dev/null &
standin_pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/standin.json" ] && break
  kill -0 "$standin_pid" 2>/dev/null || { cat "$work/standin.log" >&2; exit 1; }
  sleep 0.1
done
FEDIOPS_DO_API_BASE_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$work/standin.json")
export FEDIOPS_DO_API_BASE_URL FEDIOPS_DO_CA_PATH=$work/ca.pem
DIGITALOCEAN_ACCESS_TOKEN=$(cat "$work/token")
export DIGITALOCEAN_ACCESS_TOKEN
echo "    $FEDIOPS_DO_API_BASE_URL"

# The playbook and roles are used from this checkout as the collection fediops.mastodon.
mkdir -p "$work/collections/ansible_collections/fediops"
ln -s "$repo" "$work/collections/ansible_collections/fediops/mastodon"
export ANSIBLE_COLLECTIONS_PATH=$work/collections${ANSIBLE_COLLECTIONS_PATH:+:$ANSIBLE_COLLECTIONS_PATH}
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0} ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false

echo "==> ansible-playbook playbooks/deploy.yml -e @playbooks/vars/demo.yml"
ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$(command -v python3)" \
  -e @"$repo/playbooks/vars/demo.yml" -e "config_namespace=$namespace" "$repo/playbooks/deploy.yml"

echo "==> kubectl get deploy,sts,svc,job,secret,configmap,ingress -n $namespace"
kubectl get deploy,sts,svc,job,secret,configmap,ingress -n "$namespace"
