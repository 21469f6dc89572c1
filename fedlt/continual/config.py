"""The ``stream:`` section of an experiment config (Si-Blurry scenario and online protocol).

Owned by the stream engine; see ``../shared/spec/si-blurry-mvp.md`` §1-2.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlt.configtools import require


@dataclass
class StreamConfig:
    """Si-Blurry / i-Blurry stream and the online protocol (spec §1-2)."""

    scenario: str = "si-blurry"
    num_tasks: int = 5
    disjoint_percent: int = 50
    blurry_percent: int = 10
    batch_size: int = 64
    online_iter: int = 3
    eval_period: int = 1000

    def validate(self, prefix: str) -> None:
        require(self.num_tasks >= 1, f"{prefix}.num_tasks", "must be >= 1")
        require(0 <= self.disjoint_percent <= 100, f"{prefix}.disjoint_percent", "must lie in [0, 100]")
        require(0 <= self.blurry_percent <= 100, f"{prefix}.blurry_percent", "must lie in [0, 100]")
