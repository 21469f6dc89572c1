"""Helper of ``ray_two_node_demo.sh``: wait for cluster nodes, and show where sweep runs ran.

python scripts/ray_demo_cluster.py wait ADDRESS N TIMEOUT_S   # until N nodes are alive
python scripts/ray_demo_cluster.py show SWEEP_OUT             # runs by Ray node
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path


def wait_for_nodes(address: str, count: int, timeout_s: float) -> int:
    import warnings

    import ray

    warnings.filterwarnings("ignore", category=FutureWarning)
    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    try:
        deadline = time.time() + timeout_s
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= count or time.time() > deadline:
                break
            time.sleep(0.5)
        cpus = ray.cluster_resources().get("CPU", 0)
        for node in alive:
            print(
                f"   node {node['NodeID'][:12]} at {node['NodeManagerAddress']}:"
                f"{node['NodeManagerPort']} CPU={node['Resources'].get('CPU', 0):g}"
            )
        print(f"   {len(alive)} node(s) alive, {cpus:g} CPUs in the cluster")
        return 0 if len(alive) >= count else 1
    finally:
        ray.shutdown()


def show(out: str) -> int:
    status_file = Path(out) / "sweep_status.json"
    if not status_file.is_file():
        print(f"   no {status_file}")
        return 1
    status = json.loads(status_file.read_text())
    print(f"   counts: {status['counts']}")
    for run in status["runs"]:
        node = str(run.get("ray_node_id", "?"))[:12]
        print(
            f"   {run['label']}/seed-{run['seed']}: {run['state']} on node {node} "
            f"pid {run.get('pid', '?')} in {run.get('wall_time_s', 0):.1f} s"
            + (f" ({run['error']})" if run.get("error") else "")
        )
    nodes = Counter(str(r.get("ray_node_id", "?"))[:12] for r in status["runs"])
    print(f"   runs per node: {dict(nodes)}")
    report = Path(out) / "report" / "report.md"
    if report.is_file():
        lines = report.read_text().splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("| Method")), None)
        if start is not None:
            print("   report table:")
            for line in lines[start : start + 4]:
                print(f"   {line}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "wait":
        sys.exit(wait_for_nodes(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    if len(sys.argv) == 3 and sys.argv[1] == "show":
        sys.exit(show(sys.argv[2]))
    print(__doc__)
    sys.exit(2)
