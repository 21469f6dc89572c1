"""The ``stream:`` section of an experiment config (Si-Blurry scenario and online protocol).

Owned by the stream engine; the scenario and protocol are those of Si-Blurry, Moon et al., ICCV 2023
(``docs/continual.md``, "Stream generation" and "Online protocol").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedlt.configtools import require, require_seed


@dataclass
class StreamConfig:
    """Si-Blurry / i-Blurry stream and the online protocol (docs/continual.md).

    Stream: ``scenario`` (``si-blurry``: random class/quota splits as the official sampler;
    ``i-blurry``: even splits), ``num_tasks`` K, ``disjoint_percent`` N (share of classes
    that appear in one task only), ``blurry_percent`` M (share of blurry-class samples
    scattered over other tasks), ``blurry_pick`` (which blurry samples get scattered:
    ``first`` in dataset order, as the official code, or ``random``), ``blurry_from_tail``
    (blurry classes = the classes with the fewest samples), ``seed`` (stream seed; null =
    the run seed).

    Protocol: ``batch_size`` new samples per step, ``online_iter`` optimizer steps per
    incoming batch, ``memory_size`` replay slots (for learners that use memory),
    ``memory_batch_size`` memory samples mixed into each step, ``memory_policy``
    (``reservoir`` or ``class_balanced``), ``eval_period`` (evaluate at the first step where
    samples seen exceed the next multiple; 0 = only at task ends), ``checkpoint_every``
    (checkpoint every this many periodic evaluations; task ends always checkpoint; 0 = task
    ends only), ``augment`` (``none``, ``crop``: random crop with 4-pixel padding
    (``crop_padding``), ``crop_flip``: plus horizontal flip), ``eval_batch_size``.

    Federated continual learning (``engine: federated_continual``,
    docs/federated_continual.md): every client replays its own stream of these settings.
    ``task_sync``: ``shared`` (every client uses one class-to-task split, drawn from the
    stream seed) or ``per_client`` (each client draws its own, exactly the stream engine's
    stream for its labels and its derived seed). ``samples_per_round``: new stream samples a
    client consumes each round it is sampled (null: its stream spread over the rounds it is
    expected to take part in, ``⌈n_k / (rounds · participation)⌉``).
    """

    scenario: Literal["si-blurry", "i-blurry"] = "si-blurry"
    num_tasks: int = 5
    disjoint_percent: int = 50
    blurry_percent: int = 10
    blurry_pick: Literal["first", "random"] = "first"
    blurry_from_tail: bool = False
    seed: int | None = None
    batch_size: int = 64
    online_iter: int = 3
    memory_size: int = 0
    memory_batch_size: int = 32
    memory_policy: Literal["reservoir", "class_balanced"] = "reservoir"
    eval_period: int = 1000
    eval_batch_size: int = 512
    checkpoint_every: int = 5
    augment: Literal["none", "crop", "crop_flip"] = "none"
    crop_padding: int = 4
    task_sync: Literal["shared", "per_client"] = "shared"
    samples_per_round: int | None = None

    def validate(self, prefix: str) -> None:
        if self.seed is not None:
            require_seed(self.seed, f"{prefix}.seed")
        require(self.num_tasks >= 1, f"{prefix}.num_tasks", f"must be >= 1, got {self.num_tasks}")
        require(
            0 <= self.disjoint_percent <= 100,
            f"{prefix}.disjoint_percent",
            f"must lie in [0, 100], got {self.disjoint_percent}",
        )
        require(
            0 <= self.blurry_percent <= 100,
            f"{prefix}.blurry_percent",
            f"must lie in [0, 100], got {self.blurry_percent}",
        )
        require(
            self.batch_size >= 1, f"{prefix}.batch_size", f"must be >= 1, got {self.batch_size}"
        )
        require(
            self.online_iter >= 1, f"{prefix}.online_iter", f"must be >= 1, got {self.online_iter}"
        )
        require(
            self.memory_size >= 0, f"{prefix}.memory_size", f"must be >= 0, got {self.memory_size}"
        )
        require(
            self.memory_batch_size >= 0,
            f"{prefix}.memory_batch_size",
            f"must be >= 0, got {self.memory_batch_size}",
        )
        require(
            self.eval_period >= 0, f"{prefix}.eval_period", f"must be >= 0, got {self.eval_period}"
        )
        require(
            self.eval_batch_size >= 1,
            f"{prefix}.eval_batch_size",
            f"must be >= 1, got {self.eval_batch_size}",
        )
        require(
            self.checkpoint_every >= 0,
            f"{prefix}.checkpoint_every",
            f"must be >= 0, got {self.checkpoint_every}",
        )
        require(
            self.samples_per_round is None or self.samples_per_round >= 1,
            f"{prefix}.samples_per_round",
            f"must be >= 1 (or null), got {self.samples_per_round}",
        )
        require(
            self.crop_padding >= 0,
            f"{prefix}.crop_padding",
            f"must be >= 0, got {self.crop_padding}",
        )
