from __future__ import annotations

import pytest

from fedlt.config import load_config

TINY = [
    "name=tiny",
    "data.partition.num_clients=4",
    "federated.rounds=3",
    "federated.eval_every=1",
    "federated.checkpoint_every=1",
    "federated.batch_size=32",
    "federated.local_epochs=1",
    "strategy.name=fedavg",
    "logging.progress=false",
    "resources.device=cpu",
]


@pytest.fixture
def tiny_config(tmp_path):
    """A few-second digits experiment; extra overrides win."""

    def make(*overrides: str):
        return load_config(None, [*TINY, f"output_dir={tmp_path / 'runs'}", *overrides])

    return make
