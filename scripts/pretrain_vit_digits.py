"""Pretrain the small ViT of the CPU prompt-learning demos on some digits classes.

Supervised training of ``vit_tiny_test`` (16×16 input, patch 4, width 96, depth 6, 3 heads,
as in ``simulations/continual/mvp_digits_demo.yaml``) from scratch on the digits *train*
split restricted to ``--classes`` (default 0-4), Adam 1e-3, batches of 64. The saved state
dict is what ``model.options.checkpoint_path`` loads: the frozen backbone of MVP, MVP-R,
L2P and DualPrompt in the stream demo (docs/mvp.md) and of the federated prompt learner
(docs/federated_continual.md). Half of the streams' classes are then new to the backbone.

    python scripts/pretrain_vit_digits.py --out runs/vit_tiny_digits.pth
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fedlt.config import SIMULATIONS_DIR, load_config
from fedlt.continual.engine import load_stream_data
from fedlt.models import build_model

DEMO_CONFIG = SIMULATIONS_DIR / "continual" / "mvp_digits_demo.yaml"


def pretrain_backbone(path: Path, classes: list[int], epochs: int, seed: int) -> Path:
    """Train vit_tiny_test on the digits train split of ``classes``; save it to ``path``."""
    cfg = load_config(DEMO_CONFIG)
    splits = load_stream_data(cfg)
    train_keep = np.isin(splits.train.labels, classes)
    test_keep = np.isin(splits.test.labels, classes)
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)

    def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        return (x - mean) / std, torch.from_numpy(labels.astype(np.int64))

    x, y = tensors(splits.train.images[train_keep], splits.train.labels[train_keep])
    xt, yt = tensors(splits.test.images[test_keep], splits.test.labels[test_keep])
    model = build_model(cfg.model.name, 10, splits.image_shape, cfg.model.options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for begin in range(0, len(x), 64):
            idx = order[begin : begin + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(xt).argmax(1) == yt).float().mean().item()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(
        f"pretrained vit_tiny_test on digits classes {classes}: {len(x)} images, {epochs} "
        f"epochs, {time.perf_counter() - start:.0f} s, test accuracy {100 * accuracy:.1f}%; "
        f"saved {path}"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/vit_tiny_digits.pth"))
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another --out (nothing is overwritten)")
    pretrain_backbone(args.out, args.classes, args.epochs, args.seed)


if __name__ == "__main__":
    main()
