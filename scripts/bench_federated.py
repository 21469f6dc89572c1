"""Benchmark: the federated engine through Flower + Ray vs a plain in-process loop.

Parts (run all by default):
  a  realistic workload — 20 clients of 32×32×3 synthetic images, ResNet-8, 1 local epoch,
     3 rounds: a minimal plain PyTorch loop, fedlt's in-process engine, and Flower + Ray
     (2 workers). Seconds per round (round 1 separately: it includes the workers building
     data and model), and Ray start-up separately.
  b  tiny compute — digits, small CNN, 10 clients, 1 Ray worker: framework overhead in ms
     per client call = (Flower round − plain-loop round) / clients per round.
  c  peak memory at 100 and 1,000 clients (10% participation), in-process engine and
     Flower + Ray (driver + Ray workers), to show no per-client model copies are kept.

Usage: python scripts/bench_federated.py [--parts abc] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fedlt.config import load_config
from fedlt.data.federated import build_federated_data
from fedlt.models import build_model
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory
from strategies.federated.base import weighted_average

REALISTIC = [
    "data.source=synthetic",
    "data.options={num_classes: 10, image_size: 32, channels: 3, train_per_class: 200, test_per_class: 50}",
    "data.longtail.profile=none",
    "data.partition.num_clients=20",
    "data.partition.alpha=0.5",
    "model.name=resnet8",
    "strategy.name=fedavg",
    "federated.rounds=3",
    "federated.local_epochs=1",
    "federated.batch_size=32",
    "federated.eval_every=1000",
    "federated.checkpoint_every=1000",
    "logging.progress=false",
    "resources.device=cpu",
    "resources.num_threads=1",
]
DIGITS = [
    "data.partition.num_clients=10",
    "strategy.name=fedavg",
    "federated.rounds=4",
    "federated.eval_every=1000",
    "federated.checkpoint_every=1000",
    "logging.progress=false",
    "resources.device=cpu",
    "resources.num_threads=1",
]


def plain_loop(cfg, threads: int, channels_last: bool = True) -> list[float]:
    """The minimal FedAvg loop: same data, model, clients, epochs and batch size, and the
    same memory format as the engine (channels-last unless told otherwise)."""
    torch.set_num_threads(threads)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    data = build_federated_data(cfg.data, cfg.seed)
    model = build_model(cfg.model.name, data.num_classes, data.image_shape)
    model = model.to(memory_format=memory_format)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x_all = (torch.from_numpy(data.train.images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    x_all = x_all.contiguous(memory_format=memory_format)
    y_all = torch.from_numpy(data.train.labels.astype(np.int64))
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    f = cfg.federated
    times = []
    gen = torch.Generator().manual_seed(0)
    for _ in range(f.rounds):
        t0 = time.perf_counter()
        states, weights = [], []
        for idx in data.client_indices:
            if len(idx) == 0:
                continue
            model.load_state_dict(global_state)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=f.lr, momentum=f.momentum)
            x, y = x_all[idx], y_all[idx]
            for _ in range(f.local_epochs):
                order = torch.randperm(len(idx), generator=gen)
                for s in range(0, len(idx), f.batch_size):
                    b = order[s : s + f.batch_size]
                    loss = torch.nn.functional.cross_entropy(model(x[b]), y[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            weights.append(len(idx))
        global_state = weighted_average(states, weights)
        times.append(time.perf_counter() - t0)
    return times


def engine_rounds(cfg, backend: str, out: Path, tag: str) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    path = run_experiment(cfg, run_dir=out / tag, backend=backend, progress=False)
    wall = time.perf_counter() - t0
    timings = RunDirectory.at(path).read_timings()
    return [t["train_s"] for t in timings], wall - sum(t["total_s"] for t in timings)


def fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def part_a(out: Path) -> None:
    print("\n## (a) realistic: 20 clients, 32×32×3 synthetic, ResNet-8, 1 epoch, 3 rounds")
    cfg = load_config(None, [*REALISTIC, f"output_dir={out}"])
    nchw = load_config(None, [*REALISTIC, f"output_dir={out}", "resources.channels_last=false"])
    plain1 = plain_loop(cfg, threads=1)
    plain2 = plain_loop(cfg, threads=2)
    plain1_nchw = plain_loop(cfg, threads=1, channels_last=False)
    inproc, _ = engine_rounds(cfg, "inprocess", out, "a-inprocess")
    inproc_nchw, _ = engine_rounds(nchw, "inprocess", out, "a-inprocess-nchw")
    flower_cfg = load_config(None, [*REALISTIC, f"output_dir={out}", "resources.ray_num_cpus=2"])
    flower, rest = engine_rounds(flower_cfg, "flower", out, "a-flower")
    print(f"plain loop, channels-last, 1 thread   s/round: {fmt(plain1)}")
    print(f"plain loop, channels-last, 2 threads  s/round: {fmt(plain2)}")
    print(f"plain loop, NCHW, 1 thread            s/round: {fmt(plain1_nchw)}")
    print(f"fedlt in-process, channels-last (1 thr) s/round: {fmt(inproc)}")
    print(f"fedlt in-process, NCHW (1 thr)          s/round: {fmt(inproc_nchw)}")
    print(f"fedlt Flower+Ray, 2 workers × 1 thread  s/round: {fmt(flower)}")
    print(f"Flower+Ray start-up + shutdown + final evaluation: {rest:.1f} s")
    steady = lambda xs: float(np.mean(xs[1:]))  # noqa: E731
    best_plain = min(steady(plain1), steady(plain2))
    print(
        f"steady-state (rounds 2-3) Flower+Ray / best plain loop = "
        f"{steady(flower):.2f} / {best_plain:.2f} = {steady(flower) / best_plain:.2f}×; "
        f"in-process engine / plain 1-thread (both channels-last) = "
        f"{steady(inproc) / steady(plain1):.2f}×; "
        f"channels-last gain: plain {steady(plain1_nchw) / steady(plain1):.2f}×, "
        f"in-process engine {steady(inproc_nchw) / steady(inproc):.2f}×"
    )


def part_b(out: Path) -> None:
    print("\n## (b) digits, small CNN, 10 clients, 1 Ray worker: overhead per client call")
    cfg = load_config(None, [*DIGITS, f"output_dir={out}"])
    plain = plain_loop(cfg, threads=1)
    inproc, _ = engine_rounds(cfg, "inprocess", out, "b-inprocess")
    flower_cfg = load_config(None, [*DIGITS, f"output_dir={out}", "resources.ray_num_cpus=1"])
    flower, rest = engine_rounds(flower_cfg, "flower", out, "b-flower")
    n = cfg.data.partition.num_clients
    print(f"plain loop s/round: {fmt(plain)}")
    print(f"in-process s/round: {fmt(inproc)}")
    print(f"Flower+Ray s/round: {fmt(flower)}  (start-up etc. {rest:.1f} s)")
    per_call = (np.mean(flower[1:]) - np.mean(plain[1:])) / n * 1000
    per_call_inproc = (np.mean(inproc[1:]) - np.mean(plain[1:])) / n * 1000
    print(
        f"overhead per client call: Flower+Ray {per_call:.1f} ms, in-process engine {per_call_inproc:.1f} ms"
    )


MEMORY_CHILD = r"""
import json, resource, sys, threading, time, os
from pathlib import Path
from fedlt.config import load_config
from fedlt.runner import run_experiment
overrides, backend, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
peak_workers = [0]
def rss_of_children():
    total = 0
    me = os.getpid()
    for p in Path('/proc').iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            text = (p / 'status').read_text()
            cmd = (p / 'cmdline').read_bytes()
        except OSError:
            continue
        if b'ray' not in cmd and b'default_worker' not in cmd:
            continue
        for line in text.splitlines():
            if line.startswith('VmRSS:'):
                total += int(line.split()[1])
    return total
stop = False
def watch():
    while not stop:
        peak_workers[0] = max(peak_workers[0], rss_of_children())
        time.sleep(0.5)
t = threading.Thread(target=watch, daemon=True); t.start()
cfg = load_config(None, overrides + [f'output_dir={out}'])
run_experiment(cfg, backend=backend, progress=False)
stop = True
print(json.dumps({'driver_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'ray_mb': peak_workers[0] / 1024}))
"""


def part_c(out: Path) -> None:
    print("\n## (c) peak memory, 10% participation, ResNet-8, synthetic 32×32 (20,000 images)")
    base = [
        "data.source=synthetic",
        "data.options={num_classes: 10, image_size: 32, channels: 3, train_per_class: 2000, test_per_class: 20}",
        "model.name=resnet8",
        "strategy.name=fedavg",
        "federated.participation=0.1",
        "federated.rounds=2",
        "federated.eval_every=1000",
        "federated.checkpoint_every=1000",
        "logging.progress=false",
        "resources.device=cpu",
        "resources.ray_num_cpus=2",
    ]
    for backend in ("inprocess", "flower"):
        for clients in (100, 1000):
            overrides = [*base, f"data.partition.num_clients={clients}"]
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, json.dumps(overrides), backend, str(out)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(f"{backend} {clients} clients FAILED: {proc.stderr[-800:]}")
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{backend:9s} {clients:5d} clients: driver peak RSS {result['driver_mb']:.0f} MB, "
                f"Ray processes peak RSS {result['ray_mb']:.0f} MB, wall {time.perf_counter() - t0:.0f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="fedlt-bench-"))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; run dirs under {out}")
    for part in args.parts:
        {"a": part_a, "b": part_b, "c": part_c}[part](out)


if __name__ == "__main__":
    main()
