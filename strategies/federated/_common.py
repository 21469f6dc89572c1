"""Small helpers shared by the federated strategies (seeded heads, epoch loops, losses)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fedlt.seeding import seeded_torch
from strategies.federated.base import ClientData


def seeded_linear(
    in_features: int, out_features: int, seed: int, purpose: str, bias: bool = True
) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default initialisation drawn from the ``purpose`` stream
    of the run seed (:func:`fedlt.seeding.seeded_torch`; the global RNG is left untouched)."""
    with seeded_torch(seed, purpose):
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
