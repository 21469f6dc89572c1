"""Scale benchmark: registered clients vs start-up, seconds per round and memory, for
fedlt on Flower + Ray (a pool of SuperNodes with cohorts), fedlt in-process, and an
idiomatic plain-Flower FedAvg app (one SuperNode per partition) on the same workload.

Workload (the default): synthetic 8×8×3 images, 10 classes, 30 training images per client
(IID), ``cnn_small``, FedAvg, 1 local epoch, batch 32, 10 % participation (1 % at 100,000
clients), 3 rounds, 2 Ray workers of 1 CPU and 1 thread. Every case runs in its own process;
a sampler sums the proportional set size (PSS) of that process and all its descendants (Ray's
services and workers included) every second.

    python scripts/bench_scale.py                               # 100 / 1,000 / 10,000 / 100,000
    python scripts/bench_scale.py --clients 1000 --cases fedlt-flower plain-flower
    python scripts/bench_scale.py --resnet                      # ResNet-8, 100 clients per round

Prints a markdown table; ``--json FILE`` also writes the raw numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

CASES = ("fedlt-flower", "fedlt-inprocess", "plain-flower")


# ------------------------------------------------------------------ measurement harness
class TreeMemory(threading.Thread):
    """Peak of the summed PSS (falls back to RSS) over a process and its descendants."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.stop = threading.Event()

    def _sample(self) -> int:
        total = 0
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return 0
        for p in procs:
            try:
                mem = p.memory_full_info()
                total += getattr(mem, "pss", mem.rss)
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.peak = max(self.peak, self._sample())


def measure(cmd: list[str], env: dict[str, str], timeout: float, memory: bool = True) -> dict:
    """Run ``cmd``; wall time, exit status, output and (``memory``) the peak tree PSS.
    Sampling PSS reads every process's smaps once a second (a few % of a core)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeMemory(proc.pid, interval=1.0 if memory else 3600.0)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        out, err = proc.communicate()
    wall = time.time() - t0
    sampler.stop.set()
    sampler.join()
    return {
        "launched": t0,
        "wall_s": wall,
        "rc": proc.returncode,
        "peak_pss_gb": sampler.peak / 1e9,
        "stdout": out,
        "stderr": err[-3000:],
    }


def fedlt_overrides(args: argparse.Namespace, clients: int, out: Path) -> list[str]:
    participation = args.participation if clients < 100_000 else args.participation_100k
    sets = [
        "name=bench",
        f"output_dir={out}",
        "data.source=synthetic",
        f"data.options.image_size={args.image_size}",
        "data.options.channels=3",
        "data.options.num_classes=10",
        f"data.options.train_per_class={clients * args.per_client // 10}",
        "data.options.test_per_class=100",
        "data.partition.name=iid",
        f"data.partition.num_clients={clients}",
        f"model.name={args.model}",
        "strategy.name=fedavg",
        f"federated.rounds={args.rounds}",
        f"federated.participation={participation}",
        "federated.local_epochs=1",
        "federated.batch_size=32",
        f"federated.eval_every={args.rounds}",
        f"federated.checkpoint_every={args.rounds}",
        "resources.device=cpu",
        "resources.num_cpus=1",
        f"resources.ray_num_cpus={args.workers}",
        "resources.num_threads=1",
    ]
    return [x for s in sets for x in ("--set", s)]


def run_fedlt(
    args: argparse.Namespace, backend: str, clients: int, threads: int = 1, memory: bool = True
) -> dict:
    out = Path(tempfile.mkdtemp(prefix="fedlt-bench-"))
    cmd = [sys.executable, "-m", "fedlt.cli", "run", "--no-progress", "--backend", backend]
    cmd += fedlt_overrides(args, clients, out)
    cmd += ["--set", f"resources.num_threads={threads}"]
    result = measure(cmd, dict(os.environ), args.timeout, memory)
    runs = list(out.glob("bench-*"))
    if result["rc"] != 0 or not runs:
        shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"{backend} at {clients} clients failed: {result['stderr']}")
    from fedlt.runs import RunDirectory

    timings = RunDirectory.at(runs[0]).read_timings()
    shutil.rmtree(out, ignore_errors=True)
    result["startup_s"] = timings[0]["started"] - result["launched"]
    result["round_s"] = [t["total_s"] for t in timings]
    result["train_s"] = [t["train_s"] for t in timings]
    return result


# -------------------------------------------------------------- the plain Flower app
def plain_flower_main(args: argparse.Namespace) -> None:
    """An idiomatic Flower 1.42 FedAvg app: one SuperNode per partition, ``@train`` ClientApp
    loading its partition, ``flwr.serverapp.strategy.FedAvg`` on the server. Same data, model
    and local training as the fedlt cases. Prints one JSON line of round start times."""
    import numpy as np
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from fedlt.models import build_model

    clients, n = args.plain_flower, args.per_client
    size = args.image_size
    shape = (size, size, 3)
    torch.set_num_threads(1)
    cache: dict[str, object] = {}

    def partition(pid: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([7, pid])
        x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        y = rng.integers(0, 10, size=n)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0)
        return xt, torch.from_numpy(y).long()

    def model() -> torch.nn.Module:
        if "model" not in cache:
            cache["model"] = build_model(args.model, 10, (shape[2], size, size))
        return cache["model"]  # type: ignore[return-value]

    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        net = model()
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x, y = partition(int(context.node_config["partition-id"]))
        opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.5)
        net.train()
        order = torch.randperm(len(y))
        for start in range(0, len(y), 32):
            idx = order[start : start + 32]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        content = RecordDict(
            {
                "arrays": ArrayRecord(net.state_dict()),
                "metrics": MetricRecord({"num-examples": len(y), "train_loss": float(loss)}),
            }
        )
        return Message(content, reply_to=msg)

    starts: list[float] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        participation = args.participation if clients < 100_000 else args.participation_100k

        def aggregate(records: list[RecordDict], key: str) -> MetricRecord:
            starts.append(time.time())
            return MetricRecord({"clients": len(records)})

        strategy = FedAvg(
            fraction_train=participation,
            fraction_evaluate=0.0,
            min_train_nodes=1,
            min_available_nodes=clients,
            train_metrics_aggr_fn=aggregate,
        )
        starts.append(time.time())
        strategy.start(
            grid,
            ArrayRecord(model().state_dict()),
            num_rounds=args.rounds,
            train_config=ConfigRecord(),
        )

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0},
            "init_args": {"num_cpus": args.workers, "include_dashboard": False},
        },
    )
    print(json.dumps({"marks": starts}))


def run_plain_flower(args: argparse.Namespace, clients: int) -> dict:
    cmd = [sys.executable, __file__, "--plain-flower", str(clients)]
    for key in ("rounds", "workers", "per_client", "image_size", "model", "participation"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    cmd += ["--participation-100k", str(args.participation_100k)]
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0")
    result = measure(cmd, env, args.timeout)
    lines = [x for x in result["stdout"].splitlines() if x.startswith('{"marks"')]
    if result["rc"] != 0 or not lines:
        raise RuntimeError(f"plain Flower at {clients} clients failed: {result['stderr']}")
    marks = json.loads(lines[-1])["marks"]
    result["startup_s"] = marks[0] - result["launched"]
    result["round_s"] = [b - a for a, b in itertools.pairwise(marks)]
    return result


# ----------------------------------------------------------------------------- main
def fmt_rounds(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--per-client", type=int, default=30)
    p.add_argument("--image-size", type=int, default=8)
    p.add_argument("--model", default="cnn_small")
    p.add_argument("--participation", type=float, default=0.1)
    p.add_argument("--participation-100k", type=float, default=0.01)
    p.add_argument("--plain-flower-max", type=int, default=10_000, help="largest plain-Flower case")
    p.add_argument("--resnet", action="store_true", help="ResNet-8, 32×32, 100 clients/round")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", help="write the raw numbers here")
    p.add_argument("--plain-flower", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plain_flower:
        plain_flower_main(args)
        return
    if args.resnet:
        resnet(args)
        return
    rows, raw = [], []
    for clients in args.clients:
        for case in args.cases:
            if case == "plain-flower" and clients > args.plain_flower_max:
                continue
            if case == "plain-flower":
                r = run_plain_flower(args, clients)
            else:
                r = run_fedlt(args, case.split("-")[1], clients)
            r.update(case=case, clients=clients)
            raw.append({k: v for k, v in r.items() if k not in ("stdout", "stderr")})
            rows.append(
                f"| {clients:,} | {case} | {r['startup_s']:.1f} | {fmt_rounds(r['round_s'])} "
                f"| {r['wall_s']:.1f} | {r['peak_pss_gb']:.2f} |"
            )
            print(rows[-1], flush=True)
    print()
    print(
        "| registered clients | case | start-up to round 1 (s) | s/round | whole process (s) | peak PSS (GB) |"
    )
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    ratios(raw)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))


def ratios(raw: list[dict]) -> None:
    by = {(r["clients"], r["case"]): r for r in raw}
    for clients in sorted({r["clients"] for r in raw}):
        fl, ip, pf = (by.get((clients, c)) for c in CASES)
        if fl and ip:
            print(
                f"{clients:,} clients: Flower+Ray / in-process whole-process time = "
                f"{fl['wall_s'] / ip['wall_s']:.2f}×",
                end="",
            )
            if pf:
                print(
                    f"; fedlt Flower+Ray / plain Flower = {fl['wall_s'] / pf['wall_s']:.2f}×",
                    end="",
                )
            print()


def resnet(args: argparse.Namespace) -> None:
    """ResNet-8 on 32×32×3, 100 clients of 50 images, all participating: does a pool of 2
    workers beat the in-process loop on 2 cores?"""
    args.model, args.image_size, args.per_client, args.participation = "resnet8", 32, 50, 1.0
    args.rounds = max(args.rounds, 5)
    results = {  # timing only: no memory sampler competing for the two cores
        "fedlt-flower (2 workers × 1 thread)": run_fedlt(args, "flower", 100, memory=False),
        "fedlt-inprocess (1 thread)": run_fedlt(args, "inprocess", 100, memory=False),
        "fedlt-inprocess (2 threads)": run_fedlt(args, "inprocess", 100, 2, memory=False),
    }
    print(
        "| case | start-up (s) | s/round (with evaluation in the last) | training s/round "
        "| steady training s/round (rounds 2+) | whole process (s) |"
    )
    print("|---|---|---|---|---|---|")
    steady = {}
    for name, r in results.items():
        steady[name] = sum(r["train_s"][1:]) / max(1, len(r["train_s"]) - 1)
        print(
            f"| {name} | {r['startup_s']:.1f} | {fmt_rounds(r['round_s'])} "
            f"| {fmt_rounds(r['train_s'])} | {steady[name]:.2f} | {r['wall_s']:.1f} |"
        )
    fl = steady["fedlt-flower (2 workers × 1 thread)"]
    for name in list(results)[1:]:
        print(f"{name} / Flower+Ray steady training s/round = {steady[name] / fl:.2f}×")


if __name__ == "__main__":
    main()
