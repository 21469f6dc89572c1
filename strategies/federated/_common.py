"""Small helpers shared by the federated strategies (seeded heads, epoch loops, losses)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from strategies.federated.base import ClientData


def derive_seed(seed: int, tag: str) -> int:
    """A seed for one named random draw (``tag``) of a run, independent of the others."""
    sequence = np.random.SeedSequence([int(seed) % (1 << 64), zlib.crc32(tag.encode())])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def seeded_linear(in_features: int, out_features: int, seed: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default initialisation drawn from ``seed`` only
    (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_features, out_features, bias=bias)


def run_epochs(
    epochs: int,
    data: ClientData,
    batch_size: int,
    generator: torch.Generator,
    step: Callable[[Tensor, Tensor], float],
) -> tuple[float, int]:
    """Call ``step(x, y)`` on every mini-batch of ``epochs`` epochs; (mean loss, steps)."""
    total, steps = 0.0, 0
    for _ in range(epochs):
        for x, y in data.batches(batch_size, generator):
            total += step(x, y)
            steps += 1
    return total / max(steps, 1), steps


def optimise(optimizer: torch.optim.Optimizer, loss: Tensor) -> float:
    """zero_grad, backward, step; the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def balanced_softmax_loss(logits: Tensor, labels: Tensor, class_counts: Tensor) -> Tensor:
    """Balanced softmax (Ren et al., NeurIPS 2020, Eq. 4): ``CE(z + log π, y)`` with the local
    class prior ``π_c = n_c / n``. Absent classes (n_c = 0) get log π = −inf and so drop out of
    the normaliser, exactly as ``log(0)`` in the formula."""
    prior = class_counts.to(device=logits.device, dtype=logits.dtype)
    prior = prior / prior.sum()
    return F.cross_entropy(logits + prior.log(), labels)


def squared_distance(params: Iterable[Tensor], anchors: Iterable[Tensor]) -> Tensor:
    """``Σ‖p − a‖²`` over paired tensors (the proximal term of FedProx / Ditto without λ/2)."""
    terms = [(p - a).pow(2).sum() for p, a in zip(params, anchors, strict=True)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def freeze(module: nn.Module, frozen: bool = True) -> None:
    """Set ``requires_grad`` of every parameter of ``module`` to ``not frozen``."""
    for p in module.parameters():
        p.requires_grad_(not frozen)
