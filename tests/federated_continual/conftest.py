from __future__ import annotations

import pytest

from fedlt.config import load_config
from fedlt.resources import simulations_dir

FCL = simulations_dir() / "fedcl" / "digits.yaml"

TINY = [
    "name=fcl_tiny",
    "federated.rounds=4",
    "federated.eval_every=1",
    "federated.checkpoint_every=2",
    "stream.samples_per_round=24",
    "logging.progress=false",
    "resources.device=cpu",
]


@pytest.fixture
def fcl_config(tmp_path):
    """A few-second federated continual experiment on digits; extra overrides win."""

    def make(*overrides: str):
        return load_config(FCL, [*TINY, f"output_dir={tmp_path / 'runs'}", *overrides])

    return make
