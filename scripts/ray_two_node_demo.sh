#!/usr/bin/env bash
# Two-node Ray cluster on this machine (loopback only), a tiny fedlt sweep on it, then teardown.
#
#   scripts/ray_two_node_demo.sh            # the active Python (its `ray` beside it)
#   FEDLT_PYTHON=path/to/python scripts/ray_two_node_demo.sh
#
# Each node is a `ray start --block` in its own process group with 1 CPU; the sweep joins the
# cluster with --ray-address, so its 4 runs (2 methods x 2 seeds) spread over both nodes.
# The cluster lives in its own temp dir, so a plain `ray.init()` elsewhere on the machine never
# finds it by accident. Teardown stops exactly the processes this script started (by their
# process-group id, then any straggler whose command line names our temp dir); it never runs
# `ray stop`, which would kill every Ray process of the user, other sessions' included.
set -euo pipefail

PY=${FEDLT_PYTHON:-$(command -v python || command -v python3)}
RAY="$(dirname "$PY")/ray"
[ -x "$RAY" ] || RAY=ray
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TMP=$(mktemp -d /tmp/fedlt-demo-XXXX)     # short: Ray's unix socket paths must stay < 108 chars
OUT="$TMP/sweep"
PIDS=()

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cleanup() {
    local rc=$?
    echo "== stopping the cluster (process groups ${PIDS[*]:-none})"
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 1 6); do     # `ray start --block` ignores TERM in practice; KILL follows
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.5
    done
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    # stragglers that left the process group but name our private temp dir
    for pid in $(pgrep -f -- "$TMP" || true); do
        [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null || true
    done
    sleep 1
    left=$(pgrep -f -- "$TMP" | grep -vx "$$" | wc -l || true)
    echo "== cluster stopped (${left} of its processes left); exit code $rc"
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT INT TERM

export RAY_USAGE_STATS_ENABLED=0 FLWR_TELEMETRY_ENABLED=0
unset RAY_ADDRESS
GCS_PORT=$(free_port)
ADDRESS="127.0.0.1:$GCS_PORT"

echo "== head node on $ADDRESS (1 CPU), temp dir $TMP"
setsid "$RAY" start --head --block --node-ip-address 127.0.0.1 --port "$GCS_PORT" \
    --num-cpus 1 --num-gpus 0 --include-dashboard false --disable-usage-stats \
    --temp-dir "$TMP/ray" --dashboard-agent-listen-port "$(free_port)" \
    >"$TMP/head.log" 2>&1 &
PIDS+=($!)

"$PY" "$HERE/ray_demo_cluster.py" wait "$ADDRESS" 1 60

echo "== second node joins $ADDRESS (1 CPU)"
setsid "$RAY" start --block --address "$ADDRESS" --node-ip-address 127.0.0.1 \
    --num-cpus 1 --num-gpus 0 --disable-usage-stats --temp-dir "$TMP/ray" \
    --dashboard-agent-listen-port "$(free_port)" \
    >"$TMP/worker.log" 2>&1 &
PIDS+=($!)

"$PY" "$HERE/ray_demo_cluster.py" wait "$ADDRESS" 2 60

echo "== fedlt sweep simulations/sweeps/tiny.yaml --ray-address $ADDRESS"
cd "$REPO"
set +e
"$PY" -m fedlt.cli sweep simulations/sweeps/tiny.yaml --ray-address "$ADDRESS" --out "$OUT" \
    --no-progress
SWEEP_RC=$?
set -e
echo "== fedlt sweep exit code: $SWEEP_RC"
"$PY" "$HERE/ray_demo_cluster.py" show "$OUT"
exit "$SWEEP_RC"
