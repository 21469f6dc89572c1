"""Check that ``data.rng: fedloge-official`` gives the partition of the official CIFAR-10-LT runs.

    python scripts/check_official_partition.py ROOT [--out DIR]

ROOT holds CIFAR-10, either as the python pickles (``ROOT/cifar-10-batches-py/``) or as an
ImageFolder tree (``ROOT/train/<class>/*.jpg`` and ``ROOT/test/<class>/*.jpg``, also found
one level down in ``ROOT/cifar10/``). The script runs

    fedlt partition simulations/fedloge/cifar10_lt_alpha0.5_if100.yaml \\
        --set data.rng=fedloge-official --set seed=3407 --set data.root=ROOT

(with ``--set data.source=imagefolder`` for the tree) and checks its ``stats.json`` against
the clients × classes matrix the official FedLoGe code prints (Xiao et al., ICLR 2024;
docs/partition.md, "Official draws"): client 0 holds ``[72, 83, 9, 1, 40, 5, 5, 0, 0, 0]``
and client 30 is the largest client, with 1,106 images. Exit code 0 when both hold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "simulations" / "fedloge" / "cifar10_lt_alpha0.5_if100.yaml"
SEED = 3407
CLIENT0 = [72, 83, 9, 1, 40, 5, 5, 0, 0, 0]
LARGEST, LARGEST_SIZE = 30, 1106


def source_overrides(root: Path) -> list[str]:
    """``--set`` values naming the data under ``root`` (pickles or an ImageFolder tree)."""
    if (root / "cifar-10-batches-py").is_dir() or (root / "test_batch").is_file():
        return ["data.source=cifar10", f"data.root={root}"]
    for tree in (root, root / "cifar10"):
        if (tree / "train").is_dir() and (tree / "test").is_dir():
            return ["data.source=imagefolder", f"data.root={tree}"]
    raise SystemExit(f"{root}: neither cifar-10-batches-py/ nor train/ and test/ class folders")


def run_partition(root: Path, out: Path) -> dict:
    """Run ``fedlt partition`` on the official config; return its ``stats.json``."""
    overrides = ["data.rng=fedloge-official", f"seed={SEED}", *source_overrides(root)]
    command = [sys.executable, "-m", "fedlt.cli", "partition", str(CONFIG), "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    print("$ fedlt partition", CONFIG.relative_to(REPO), *(f"--set {o}" for o in overrides))
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"fedlt partition failed (exit code {done.returncode})")
    print(f"fedlt partition: {time.perf_counter() - started:.1f} s")
    return json.loads((out / "stats.json").read_text())


def check(stats: dict) -> bool:
    """Print the official checks and return whether both hold."""
    clients = stats["clients"]
    counts = [c["class_counts"] for c in clients]
    sizes = [c["size"] for c in clients]
    largest = max(range(len(sizes)), key=lambda k: (sizes[k], -k))
    first = counts[0] == CLIENT0
    top = largest == LARGEST and sizes[largest] == LARGEST_SIZE
    print(f"training images: {stats['num_train']} (class counts {stats['class_counts']})")
    print(f"client 0: {counts[0]}  expected {CLIENT0}  {'ok' if first else 'MISMATCH'}")
    print(f"client 0 local test: {clients[0]['test_class_counts']}")
    print(
        f"largest client: {largest} with {sizes[largest]} images  expected {LARGEST} with "
        f"{LARGEST_SIZE}  {'ok' if top else 'MISMATCH'}"
    )
    print("clients x classes (first 5 rows):")
    for k in range(min(5, len(counts))):
        print(f"  {k:2d}: {counts[k]}")
    return first and top


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding CIFAR-10 (pickles or JPEG tree)")
    parser.add_argument("--out", type=Path, help="partition folder to write (must not exist)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedlt-official-") as scratch:
        out = args.out or Path(scratch) / "partition"
        ok = check(run_partition(args.root.expanduser().resolve(), out))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
