"""Reproduce the MVP paper setting: Si-Blurry (N=50, M=10, K=5), frozen ViT-B/16 (in21k).

Runs ``simulations/continual/<method>_<dataset>.yaml`` for every method and seed and prints
A_auc / A_avg / A_last / F_last (mean ± std over seeds, in %) next to the anchor numbers of
docs/mvp.md (GACL's re-run of the official code on CIFAR-100, a different backbone).

Needs a CUDA GPU (``--device cpu`` forces a CPU run, days long), the ImageNet-21k weights
(``--weights`` file, or the local timm/Hugging Face cache) and the dataset under
``--data-root``; anything missing stops the script with a message saying what to put where.

Example (docs/mvp.md)::

    python scripts/run_mvp_paper.py --dataset cifar100 --data-root data/cifar100 \\
        --weights ~/weights/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz \\
        --methods mvp mvp_r l2p dualprompt --seeds 1 2 3 4 5 --out runs/mvp_paper
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from fedlt.config import SIMULATIONS_DIR, load_config
from fedlt.continual.engine import run_stream
from fedlt.models.vit import IN21K_HUB_ID, IN21K_NPZ_NAME, find_cached_in21k
from fedlt.runs import RunDirectory

METHODS = ("mvp", "mvp_r", "l2p", "dualprompt")
DATASETS = ("cifar100", "tinyimagenet", "imagenet_r")
METRICS = ("A_auc", "A_avg", "A_last")
# docs/mvp.md: GACL (NeurIPS 2024) re-ran the official code, DeiT-S/16 (611 ImageNet classes)
ANCHORS_CIFAR100 = {
    "mvp": (45.07, 44.93, 39.94),
    "mvp_r": (60.62, 57.58, 64.30),
    "l2p": (42.68, 39.89, 28.59),
    "dualprompt": (41.34, 38.59, 22.74),
}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_data(dataset: str, root: Path) -> None:
    """Stop with a clear message when the dataset is not where the config expects it."""
    if dataset == "cifar100":
        needed = [root / "cifar-100-python" / name for name in ("train", "test", "meta")]
        hint = "the extracted cifar-100-python.tar.gz (cifar-100-python/{train,test,meta})"
    else:
        needed = [root / "train", root / "test"]
        hint = "train/<class>/ and test/<class>/ image folders " + (
            "(Tiny-ImageNet: regroup val/ by val_annotations.txt into test/<wnid>/)"
            if dataset == "tinyimagenet"
            else "(ImageNet-R: a per-class 80/20 train/test split)"
        )
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        fail(f"{dataset} data not found under {root}: missing {missing}. Put {hint} there.")


def check_weights(weights: str | None) -> str | None:
    if weights:
        if not Path(weights).expanduser().is_file():
            fail(f"--weights {weights}: file not found")
        return str(Path(weights).expanduser())
    if find_cached_in21k() is None:
        fail(
            "no ImageNet-21k ViT-B/16 weights on this machine (nothing is downloaded). Pass "
            f"--weights /path/to/{IN21K_NPZ_NAME} (or a torch state dict), or copy the "
            f"Hugging Face cache of {IN21K_HUB_ID} to ~/.cache/huggingface."
        )
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="cifar100")
    parser.add_argument("--data-root", required=True, help="dataset folder (see --help text)")
    parser.add_argument("--weights", default=None, help="ViT-B/16 in21k .npz or state dict")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", default="runs/mvp_paper")
    parser.add_argument("--set", action="append", default=[], help="extra KEY=VALUE override")
    args = parser.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("no CUDA GPU visible; the paper setting needs one (or pass --device cpu)")
    root = Path(args.data_root).expanduser()
    check_data(args.dataset, root)
    weights = check_weights(args.weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, list[dict]] = {}
    for method in args.methods:
        config = SIMULATIONS_DIR / "continual" / f"{method}_{args.dataset}.yaml"
        for seed in args.seeds:
            overrides = [f"seed={seed}", f"data.root={root}", f"resources.device={args.device}"]
            if weights:
                overrides.append(f"model.options.checkpoint_path={weights}")
            cfg = load_config(config, [*overrides, *args.set])
            run_dir = out / f"{method}_{args.dataset}_seed{seed}"
            run = (
                RunDirectory.open(run_dir)
                if run_dir.exists()
                else RunDirectory.create(cfg, run_dir)
            )
            start = time.perf_counter()
            summary = run_stream(cfg, run, progress=cfg.logging.progress)
            final = summary["final"]
            results.setdefault(method, []).append(final)
            print(
                f"{method} seed {seed}: "
                + "  ".join(f"{k} {100 * v:.2f}" for k, v in final.items())
                + f"  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    (out / f"results_{args.dataset}.json").write_text(json.dumps(results, indent=2))
    header = " | ".join(f"{m} (%)" for m in (*METRICS, "F_last"))
    print(f"\n| method | {header} | anchor A_auc/A_avg/A_last |\n|---|---|---|---|---|---|")
    for method, finals in results.items():
        cells = []
        for metric in (*METRICS, "F_last"):
            values = [100 * f[metric] for f in finals]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}")
        anchor = ANCHORS_CIFAR100.get(method) if args.dataset == "cifar100" else None
        anchor_text = " / ".join(f"{a:.2f}" for a in anchor) if anchor else "-"
        print(f"| {method} | {' | '.join(cells)} | {anchor_text} |")


if __name__ == "__main__":
    main()
