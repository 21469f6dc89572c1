"""Benchmark the Dirichlet partitioners at FedLoGe-like and extreme scales.

    python scripts/bench_partition.py [--clients 1000] [--classes 100] [--samples 50000]

1. Per-sample Dirichlet (docs/partition.md), alpha = 0.1: target < 1 s.
2. Minimum-size Dirichlet, alpha = 0.05, min_size = 10: must terminate; prints the time and
   the smallest client.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fedlt.config import PartitionConfig
from fedlt.data.partition import build_partition, empty_clients


def timed(labels: np.ndarray, cfg: PartitionConfig, seed: int) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    parts = build_partition(labels, cfg, np.random.default_rng(seed))
    return time.perf_counter() - start, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--min-size", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    labels = np.repeat(np.arange(args.classes), args.samples // args.classes)

    cfg = PartitionConfig(num_clients=args.clients, alpha=0.1)
    seconds, parts = timed(labels, cfg, args.seed)
    sizes = [len(p) for p in parts]
    print(
        f"dirichlet alpha=0.1: {args.clients} clients x {args.classes} classes x "
        f"{len(labels)} samples in {seconds:.3f} s "
        f"(client size min {min(sizes)}, max {max(sizes)}, empty {len(empty_clients(parts))})"
    )

    cfg = PartitionConfig(num_clients=args.clients, alpha=0.05, min_size=args.min_size)
    seconds, parts = timed(labels, cfg, args.seed)
    sizes = [len(p) for p in parts]
    print(
        f"min-size dirichlet alpha=0.05, min_size={args.min_size}: terminated in "
        f"{seconds:.3f} s (client size min {min(sizes)}, max {max(sizes)})"
    )


if __name__ == "__main__":
    main()
