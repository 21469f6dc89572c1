"""The ``federated:`` section of an experiment config (rounds, local training, evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedlt.configtools import require


@dataclass
class FederatedConfig:
    """Round protocol shared by every federated strategy.

    Local training: ``local_epochs`` epochs of SGD(``lr``, ``momentum``, ``weight_decay``) with
    batches of ``batch_size``; optimizers are created afresh each round (FedLoGe spec §3).
    ``participation``: fraction of clients (with data) sampled per round, deterministic per
    seed and round. ``eval_every`` / ``checkpoint_every``: in rounds (the last round always
    evaluates and checkpoints). ``mask_absent_classes``: personalised evaluation removes the
    classes absent from a client's local test set, for every method alike (spec §4).
    ``max_failure_fraction``: a round in which more than this fraction of the sampled clients
    fail stops the run (with a resumable checkpoint of the last good round).
    ``fail_clients``: fault injection for tests: ``[[round, partition_id], ...]``.
    """

    rounds: int = 20
    participation: float = 1.0
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.03
    momentum: float = 0.5
    weight_decay: float = 0.0
    augment: bool = False
    eval_every: int = 1
    checkpoint_every: int = 5
    mask_absent_classes: bool = True
    max_failure_fraction: float = 0.5
    round_timeout: float = 3600.0
    eval_batch_size: int = 512
    fail_clients: list[list[int]] = field(default_factory=list)

    def validate(self, prefix: str) -> None:
        require(self.rounds >= 1, f"{prefix}.rounds", f"must be >= 1, got {self.rounds}")
        require(
            0.0 < self.participation <= 1.0,
            f"{prefix}.participation",
            f"must lie in (0, 1], got {self.participation}",
        )
        require(self.local_epochs >= 1, f"{prefix}.local_epochs", "must be >= 1")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        require(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        require(self.eval_every >= 1, f"{prefix}.eval_every", "must be >= 1")
        require(self.checkpoint_every >= 1, f"{prefix}.checkpoint_every", "must be >= 1")
        require(
            0.0 <= self.max_failure_fraction <= 1.0,
            f"{prefix}.max_failure_fraction",
            "must lie in [0, 1]",
        )
        for i, item in enumerate(self.fail_clients):
            require(len(item) == 2, f"{prefix}.fail_clients[{i}]", "expected [round, partition_id]")
