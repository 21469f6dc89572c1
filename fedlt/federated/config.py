"""The ``federated:`` section of an experiment config (rounds, local training, evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fedlt.configtools import require, require_range

MAX_LR = 10.0
"""Largest accepted ``federated.lr``: plain SGD with a step above 10 diverges for every model
here (``lr: 1e30`` gave a NaN loss on round 1), so a larger value is taken for a typo."""


@dataclass
class FederatedConfig:
    """Round protocol shared by every federated strategy.

    Local training: ``local_epochs`` epochs of SGD(``lr``, ``momentum``, ``weight_decay``) with
    batches of ``batch_size``; optimizers are created afresh each round (docs/fedloge.md).
    ``participation``: fraction of clients (with data) sampled per round, deterministic per
    seed and round. ``eval_every`` / ``checkpoint_every``: in rounds (the last round always
    evaluates and checkpoints). ``mask_absent_classes``: personalised evaluation removes the
    classes absent from a client's local test set, for every method alike (docs/federated.md).
    ``augment``: random crop (4-pixel padding) and horizontal flip of every training batch;
    ``augment_fill``: the colour of the crop's padding, ``black`` (pixel value 0 before
    normalisation, as torchvision's ``RandomCrop(padding=4)`` pads and the official FedLoGe
    code therefore trains; docs/results/fedavg_gap.md) or ``mean`` (0 after normalisation,
    i.e. the data's mean colour: fedlt's behaviour before December 2026).
    ``max_failure_fraction``: a round in which more than this fraction of the sampled clients
    fail stops the run (with a resumable checkpoint of the last good round).
    ``fail_clients``: fault injection for tests: ``[[round, partition_id], ...]``.

    Ranges: ``lr`` in (0, 10] (:data:`MAX_LR`), ``momentum`` in [0, 1), ``weight_decay`` >= 0,
    ``participation`` in (0, 1], ``max_failure_fraction`` in [0, 1], ``round_timeout`` > 0
    seconds, every count >= 1; every number finite.
    """

    rounds: int = 20
    participation: float = 1.0
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.03
    momentum: float = 0.5
    weight_decay: float = 0.0
    augment: bool = False
    augment_fill: Literal["black", "mean"] = "black"
    eval_every: int = 1
    checkpoint_every: int = 5
    mask_absent_classes: bool = True
    max_failure_fraction: float = 0.5
    round_timeout: float = 3600.0
    eval_batch_size: int = 512
    fail_clients: list[list[int]] = field(default_factory=list)

    def validate(self, prefix: str) -> None:
        def key(name: str) -> str:
            return f"{prefix}.{name}"

        require_range(self.rounds, key("rounds"), 1)
        require_range(self.participation, key("participation"), 0, 1, low_open=True)
        require_range(self.local_epochs, key("local_epochs"), 1)
        require_range(self.batch_size, key("batch_size"), 1)
        require_range(self.lr, key("lr"), 0, MAX_LR, low_open=True)
        require_range(self.momentum, key("momentum"), 0, 1, high_open=True)
        require_range(self.weight_decay, key("weight_decay"), 0)
        require_range(self.eval_every, key("eval_every"), 1)
        require_range(self.checkpoint_every, key("checkpoint_every"), 1)
        require_range(self.max_failure_fraction, key("max_failure_fraction"), 0, 1)
        require_range(self.round_timeout, key("round_timeout"), 0, low_open=True)
        require_range(self.eval_batch_size, key("eval_batch_size"), 1)
        for i, item in enumerate(self.fail_clients):
            require(len(item) == 2, key(f"fail_clients[{i}]"), "expected [round, partition_id]")
            require_range(item[0], key(f"fail_clients[{i}][0]"), 1)
            require_range(item[1], key(f"fail_clients[{i}][1]"), 0)
