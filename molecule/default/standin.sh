#!/usr/bin/env bash
# Starts or stops the DigitalOcean API stand-in (tests/support/do_standin) for the molecule scenarios.
#   standin.sh start STATE_DIR   -> prints the base URL; STATE_DIR gets ca.pem (to trust), token, fixtures.json
#   standin.sh stop STATE_DIR    -> stops the process recorded in STATE_DIR/standin.pid
set -euo pipefail
action=$1
state=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$state"
case "$action" in
  start)
    if [ -s "$state/standin.pid" ] && kill -0 "$(cat "$state/standin.pid")" 2>/dev/null; then
      python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$state/standin.json"
      exit 0
    fi
    if [ ! -s "$state/server.pem" ]; then
      (
        cd "$state"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 \
          -subj /CN=do-standin-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
          -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile server.ext \
          -out server.pem 2>/dev/null
        chmod 600 ca.key server.key
      )
    fi
    rm -f "$state/standin.json"
    PYTHONPATH="$repo/tests/support${PYTHONPATH:+:$PYTHONPATH}" setsid python3 -m do_standin \
      --fixtures "$state/fixtures.json" --cert "$state/server.pem" --key "$state/server.key" \
      --token-file "$state/token" >"$state/standin.json" 2>"$state/standin.log" </dev/null &
    echo $! >"$state/standin.pid"
    for _ in $(seq 1 100); do
      if [ -s "$state/standin.json" ]; then
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_url"])' "$state/standin.json"
        exit 0
      fi
      kill -0 "$(cat "$state/standin.pid")" 2>/dev/null || break
      sleep 0.1
    done
    echo "the DigitalOcean API stand-in did not start; log:" >&2
    cat "$state/standin.log" >&2
    exit 1
    ;;
  stop)
    if [ -s "$state/standin.pid" ]; then
      pid=$(cat "$state/standin.pid")
      if kill -0 "$pid" 2>/dev/null && grep -q do_standin "/proc/$pid/cmdline" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      fi
      rm -f "$state/standin.pid"
    fi
    ;;
  *)
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
    ;;
esac
