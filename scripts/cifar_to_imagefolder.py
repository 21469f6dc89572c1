"""Write CIFAR-10 or CIFAR-100 as an ImageFolder tree of JPEG files (``source: imagefolder``).

Input: the CIFAR "python version" from https://www.cs.toronto.edu/~kriz/cifar.html,
extracted so that ``<cifar root>/cifar-10-batches-py/`` (or ``cifar-100-python/``) exists.
Output: ``<out>/train/<class>/<index>.jpg`` and ``<out>/test/<class>/<index>.jpg``, the
layout the continual CIFAR-10 configs (``simulations/continual/*_cifar10.yaml``, root
``data/cifar10``) and the CIFAR-10-LT CPU sweeps (``simulations/sweeps/cifar10-lt-cpu*.yaml``)
read (docs/partition.md, "Sources")::

    python scripts/cifar_to_imagefolder.py data/cifar data/cifar10
    python scripts/cifar_to_imagefolder.py data/cifar data/cifar100 --dataset cifar100
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from fedlt.config import DataConfig
from fedlt.data.base import ArrayDataset
from fedlt.data.sources import load_source


def write_split(split: ArrayDataset, folder: Path, quality: int) -> None:
    """One JPEG per image, in one folder per class name."""
    for name in split.classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(split.images, split.labels, strict=True)):
        target = folder / split.classes[int(label)] / f"{i:05d}.jpg"
        Image.fromarray(np.asarray(image, dtype=np.uint8).squeeze()).save(target, quality=quality)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cifar_root", help="folder holding cifar-10-batches-py/ (or -100-)")
    parser.add_argument("out", help="ImageFolder root to create (must not exist)")
    parser.add_argument("--dataset", choices=("cifar10", "cifar100"), default="cifar10")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (1-100)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} already exists; remove it first")
    splits = load_source(DataConfig(source=args.dataset, root=args.cifar_root), seed=0)
    for name, split in (("train", splits.train), ("test", splits.test)):
        write_split(split, out / name, args.quality)
        print(f"{out / name}: {len(split)} images in {len(split.classes)} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
