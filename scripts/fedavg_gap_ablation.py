"""Ablation: where fedlt's FedAvg falls short of the official FedAvg (issue 13, item 2).

    python scripts/fedavg_gap_ablation.py ROOT [--out runs/fedavg_gap] [--seeds 3407 1]
        [--variants baseline partition init norm all pad pad_seed ...] [--parallel 2]

ROOT holds CIFAR-10 as an ImageFolder tree (``ROOT/train/<class>/*.jpg``,
``ROOT/test/<class>/*.jpg``, also found one level down in ``ROOT/cifar10/``) or as the python
pickles (``ROOT/cifar-10-batches-py/``). Every run is FedAvg (McMahan et al., AISTATS 2017)
at the CPU setting of docs/results/cifar10lt.md — CIFAR-10, exponential long tail IF=100,
Dirichlet α=0.5 over 40 clients, all clients every round, ResNet-8, 1 local epoch at batch
32, SGD lr 0.03, momentum 0.5, 20 rounds, evaluation at round 20 — with the in-process
engine, one torch thread each, ``--parallel`` at a time. The variants switch on, one at a
time and all together, the choices of the official FedLoGe code (Xiao et al., ICLR 2024;
docs/fedloge.md, "Matching the official FedAvg"):

* ``baseline``: fedlt's former defaults (``model.options.init=kaiming``);
* ``partition``: ``data.rng=fedloge-official`` (the official long-tail and partition draws,
  docs/partition.md);
* ``init``: ``model.options.init=pytorch`` (PyTorch's default conv initialisation instead
  of Kaiming normal);
* ``norm``: ``data.normalization=imagenet`` (ImageNet mean/std instead of the data's own);
* ``all``: the three together.

Two more variants:

* ``pad``: ``all`` with ``federated.augment_fill=black``: the random crop's 4-pixel border
  is black (pixel value 0, i.e. ``-mean/std`` after normalisation), as torchvision's
  ``RandomCrop(32, padding=4)`` pads the PIL image before ``Normalize`` in the official code
  (fedlt's default since this ablation; the five variants above keep the former ``mean``
  fill, 0 after normalisation). Crop offsets and flips are the same draws.
* ``pad_seed``: ``pad`` with the model initialised right after ``torch.manual_seed(seed)``
  (the official fedloge.py seeds torch globally with the run seed before building its model;
  the official FedAvg loop in main.py does not seed torch at all) instead of fedlt's
  ``model_init`` stream, by a change made only inside its own run process by this script
  (``PATCHES``, ``apply_patches``), not in fedlt: another draw of the same initialisation,
  so ``pad`` against ``pad_seed`` shows how much one initial draw moves the numbers.
* ``pad_draw2`` … ``pad_draw4``: ``pad`` with three more initial draws (``torch.manual_seed``
  of ``derived_seed(seed, "ablation_init_draw", k)``, patched likewise); with ``pad`` and
  ``pad_seed`` they give five draws of the model's initialisation over the same partition,
  batches and crops, summarised as mean ± sample std in the table's last fedlt row.
* ``pad_perm`` / ``pad_seed_perm``: ``pad`` / ``pad_seed`` with the official main.py's
  permuted aggregation weights (client k's update weighted by the size of client π_r(k),
  a fresh permutation each round; a bug fedlt does not reproduce, ../shared/spec/fedloge.md
  §3), patched likewise, to measure how much it moves the official numbers.

A run directory under ``--out`` with a ``summary.json`` is skipped; one without is run
again from scratch (removed first). The table (markdown) gives generic top-1 (balanced test
set, global model) and personal top-1 (unweighted mean over clients of local-test top-1,
absent classes masked) at the last round beside the official code's numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from check_official_partition import source_overrides  # the same ROOT layouts

from fedlt.runs import RunDirectory

ROUNDS = 20
# Official FedLoGe code, FedAvg at this setting (issue 13): seed -> (generic, personal) in %.
OFFICIAL = {3407: (25.3, 61.6), 1: (24.7, 61.9)}
# The baseline is fedlt's choices before this ablation: Kaiming conv init (the default is now
# PyTorch's, the official code's, because of this table).
KAIMING = "model.options.init=kaiming"
# The crop padding was the mean colour until this ablation (the default is now black, the
# official code's): the first five variants keep it.
MEAN_FILL = "federated.augment_fill=mean"
ALL = ["data.rng=fedloge-official", "model.options.init=pytorch", "data.normalization=imagenet"]
PAD = [*ALL, "federated.augment_fill=black"]
VARIANTS: dict[str, list[str]] = {
    "baseline": [MEAN_FILL, KAIMING],
    "partition": [MEAN_FILL, KAIMING, "data.rng=fedloge-official"],
    "init": [MEAN_FILL, "model.options.init=pytorch"],
    "norm": [MEAN_FILL, KAIMING, "data.normalization=imagenet"],
    "all": [MEAN_FILL, *ALL],
    # ``pad`` and the variants that patch it (PATCHES) share its overrides
    **dict.fromkeys(
        ["pad", "pad_seed", "pad_draw2", "pad_draw3", "pad_draw4", "pad_perm", "pad_seed_perm"],
        PAD,
    ),
}
# These variants also patch the run's own process (this ablation only; fedlt is unchanged).
PATCHES: dict[str, tuple[str, ...]] = {
    "pad_seed": ("torch_seed",),
    "pad_draw2": ("init_draw:2",),
    "pad_draw3": ("init_draw:3",),
    "pad_draw4": ("init_draw:4",),
    "pad_perm": ("permuted_weights",),
    "pad_seed_perm": ("torch_seed", "permuted_weights"),
}
# The runs of ``pad`` that differ only in the model's initial draw (draw 0: fedlt's
# ``model_init`` stream; 1: ``torch.manual_seed(seed)``; 2-4: ``init_draw``).
INIT_DRAWS = ("pad", "pad_seed", "pad_draw2", "pad_draw3", "pad_draw4")
LABELS = {
    "baseline": "baseline (fedlt's former defaults)",
    "partition": "+ official partition",
    "init": "+ PyTorch init",
    "norm": "+ ImageNet normalisation",
    "all": "all three",
    "pad": "all three + black crop padding",
    "pad_seed": "all three + black crop padding + `torch.manual_seed` init draw",
    "pad_draw2": "all three + black crop padding, init draw 2",
    "pad_draw3": "all three + black crop padding, init draw 3",
    "pad_draw4": "all three + black crop padding, init draw 4",
    "pad_perm": "all three + black crop padding + official permuted aggregation weights",
    "pad_seed_perm": "… + `torch.manual_seed` init draw + official permuted aggregation weights",
}
GENERIC = "generic.global.top1"
PERSONAL = "personal.global.top1_mean"


# -- patches for the ablation-only variants (applied in the child process) ------------------
CHILD = "--child-patches"


def _build_models_after_manual_seed(seed_of) -> None:
    """ABLATION ONLY. Build every fresh model right after ``torch.manual_seed(seed_of(seed))``
    instead of from fedlt's ``model_init`` stream; the global RNG is restored afterwards."""
    import torch

    from strategies.federated.base import FederatedStrategy

    def _fresh_model(self, seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_of(seed))
            return self.model_factory()

    FederatedStrategy._fresh_model = _fresh_model


def _patch_torch_seed() -> None:
    """``torch.manual_seed(seed)`` before the model, as the official fedloge.py's global
    seeding does."""
    _build_models_after_manual_seed(lambda seed: seed)


def _patch_init_draw(draw: str) -> None:
    """``torch.manual_seed(derived_seed(seed, "ablation_init_draw", draw))`` before the model:
    one more draw of the same initialisation, everything else (partition, batches, crops)
    as in ``pad``."""
    from fedlt.seeding import derived_seed

    _build_models_after_manual_seed(
        lambda seed: derived_seed(seed, "ablation_init_draw", int(draw))
    )


def _patch_permuted_weights() -> None:
    """ABLATION ONLY: the official main.py's aggregation bug (../shared/spec/fedloge.md §3,
    not reproduced by fedlt). Every round the official loop trains clients 0…K-1 in order but
    weights the i-th model by the training-set size of ``idxs_users[i]``, a fresh random
    permutation of the clients; here client k's update of round r carries the size of
    client ``π_r(k)`` as its aggregation weight, ``π_r`` drawn from
    ``np.random.default_rng(derived_seed(seed, "ablation_permuted_weights", r))``. Needs all
    clients every round (participation 1.0)."""
    import numpy as np

    from fedlt.federated.runtime import FederatedRuntime
    from fedlt.seeding import derived_seed

    original = FederatedRuntime.train_client

    def train_client(self, client_id, round_, global_state, client_state):
        result = original(self, client_id, round_, global_state, client_state)
        sizes = [len(idx) for idx in self.data.client_indices]
        perm = np.random.default_rng(
            derived_seed(self.cfg.seed, "ablation_permuted_weights", round_)
        ).permutation(len(sizes))
        result.num_examples = int(sizes[perm[client_id]])
        return result

    FederatedRuntime.train_client = train_client


PATCH_FUNCTIONS = {"torch_seed": _patch_torch_seed, "permuted_weights": _patch_permuted_weights}


def apply_patches(names: list[str]) -> None:
    """Apply the named ablation patches to this process (unknown names raise); ``NAME:ARG``
    passes ARG (``init_draw:2``)."""
    for name in names:
        if name.startswith("init_draw:"):
            _patch_init_draw(name.split(":", 1)[1])
        else:
            PATCH_FUNCTIONS[name]()


def child_main(argv: list[str]) -> int:
    """``--child-patches NAMES -- FEDLT_ARGS``: apply NAMES (comma-separated), then run the
    fedlt CLI with FEDLT_ARGS in this process."""
    names, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    apply_patches([n for n in names.split(",") if n])
    from fedlt.cli import main as fedlt_main

    return fedlt_main(rest)


def setting_overrides(seed: int, root: Path) -> list[str]:
    """The CPU setting of docs/results/cifar10lt.md at ``ROUNDS`` rounds, FedAvg."""
    return [
        f"seed={seed}",
        "strategy.name=fedavg",
        "model.name=resnet8",
        "data.longtail.profile=exponential",
        "data.longtail.imbalance_factor=100",
        "data.partition.name=dirichlet",
        "data.partition.num_clients=40",
        "data.partition.alpha=0.5",
        f"federated.rounds={ROUNDS}",
        "federated.participation=1.0",
        "federated.local_epochs=1",
        "federated.batch_size=32",
        "federated.lr=0.03",
        "federated.momentum=0.5",
        "federated.augment=true",
        f"federated.eval_every={ROUNDS}",
        f"federated.checkpoint_every={ROUNDS}",
        "logging.progress=false",
        "resources.device=cpu",
        "resources.num_threads=1",
        *source_overrides(root),
    ]


def run_dir(out: Path, variant: str, seed: int) -> Path:
    """Where one run lives: ``OUT/<variant>-s<seed>``."""
    return out / f"{variant}-s{seed}"


def is_done(path: Path) -> bool:
    """A finished run has a summary."""
    return RunDirectory.at(path).has_summary


def run_one(out: Path, variant: str, seed: int, root: Path) -> tuple[str, int, float, int]:
    """Run one variant at one seed as its own process; return (variant, seed, s, exit code)."""
    path = run_dir(out, variant, seed)
    if path.exists():
        shutil.rmtree(path)
    if variant in PATCHES:
        script = os.path.abspath(__file__)
        cmd = [sys.executable, script, CHILD, ",".join(PATCHES[variant]), "--"]
    else:
        cmd = [sys.executable, "-m", "fedlt.cli"]
    cmd += ["run", "--backend", "inprocess", "--no-progress"]
    cmd += ["--run-dir", str(path)]
    for item in [*setting_overrides(seed, root), f"name=fedavg-{variant}", *VARIANTS[variant]]:
        cmd += ["--set", item]
    started = time.perf_counter()
    with open(out / f"{variant}-s{seed}.log", "w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    return variant, seed, time.perf_counter() - started, code


def final_metrics(path: Path) -> tuple[float, float] | None:
    """(generic, personal) top-1 in % at the last round, or None if unfinished."""
    if not is_done(path):
        return None
    final = (RunDirectory.at(path).read_summary() or {}).get("final") or {}
    if GENERIC not in final or PERSONAL not in final:
        return None
    return 100 * float(final[GENERIC]), 100 * float(final[PERSONAL])


def mean_std(values: list[float]) -> str:
    """``mean ± sample std`` to two decimals."""
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{mean:.2f} ± {std:.2f}"


def table(out: Path, seeds: list[int], variants: list[str]) -> str:
    """Markdown table: one row per variant, generic / personal per seed, official beside."""
    head = "| variant | " + " | ".join(f"seed {s} generic | seed {s} personal" for s in seeds)
    rule = "|---|" + "---|---|" * len(seeds)
    rows = [head + " |", rule]
    for variant in [v for v in VARIANTS if v in variants]:
        cells = []
        for seed in seeds:
            got = final_metrics(run_dir(out, variant, seed))
            cells += [f"{got[0]:.2f}", f"{got[1]:.2f}"] if got else ["not run", "not run"]
        rows.append(f"| {LABELS[variant]} | " + " | ".join(cells) + " |")
    draws = [v for v in INIT_DRAWS if v in variants]
    if len(draws) > 1:
        cells = []
        for seed in seeds:
            got = [m for v in draws if (m := final_metrics(run_dir(out, v, seed)))]
            for i in (0, 1):
                values = [m[i] for m in got]
                cells.append(mean_std(values) if len(values) > 1 else "—")
        n = "/".join(str(len([v for v in draws if is_done(run_dir(out, v, s))])) for s in seeds)
        label = f"all three + black crop padding: mean ± std over the init draws ({n})"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    official = []
    for seed in seeds:
        ref = OFFICIAL.get(seed)
        official += [f"{ref[0]:.1f}", f"{ref[1]:.1f}"] if ref else ["—", "—"]
    rows.append("| official FedLoGe code | " + " | ".join(official) + " |")
    return "\n".join(rows)


def pending(out: Path, seeds: list[int], variants: list[str]) -> list[tuple[str, int]]:
    """(variant, seed) pairs still to run, seed by seed, variants in the order given (the
    table keeps the order of :data:`VARIANTS`)."""
    return [(v, s) for s in seeds for v in variants if not is_done(run_dir(out, v, s))]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        return child_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding CIFAR-10 (JPEG tree or pickles)")
    parser.add_argument("--out", type=Path, default=Path("runs/fedavg_gap"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[3407, 1])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one core each)")
    parser.add_argument("--table-only", action="store_true", help="run nothing, tabulate")
    args = parser.parse_args()
    root = args.root.expanduser().resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    todo = [] if args.table_only else pending(args.out, args.seeds, args.variants)
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        jobs = [pool.submit(run_one, args.out, v, s, root) for v, s in todo]
        for job in jobs:
            variant, seed, seconds, code = job.result()
            print(f"{variant} seed {seed}: {seconds:.0f} s, exit code {code}", flush=True)
    print(table(args.out, args.seeds, args.variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
