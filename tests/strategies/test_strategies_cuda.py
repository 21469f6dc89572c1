"""Every strategy on a CUDA device (opt-in: runs only where CUDA exists)."""

from __future__ import annotations

import pytest
import torch

SMOKE_OPTIONS = {
    "fedavg": {},
    "fedprox": {},
    "fedrep": {"head_epochs": 2},
    "fedbabu": {"finetune_epochs": 2},
    "fedrod": {},
    "ditto": {},
    "fedetf": {"personal_loops": 2, "adapt_epochs": 1},
    "fedloge": {"sse_steps": 300},
}

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("name", sorted(SMOKE_OPTIONS))
def test_strategy_runs_on_cuda_with_cpu_states(world, name):
    gpu_world = world.to("cuda")
    strategy = gpu_world.make(name, SMOKE_OPTIONS[name], device="cuda")
    global_state, states, losses = gpu_world.run(strategy, rounds=3)
    assert all(v.device.type == "cpu" for v in global_state.values())
    assert all(v.device.type == "cpu" for s in states.values() for v in s.values())
    assert losses[-1] < losses[0]
    generic = gpu_world.generic_accuracy(strategy, global_state)
    personal = gpu_world.personal_accuracy(strategy, global_state, states)
    assert generic[strategy.generic_modes[0]] > 0.5, generic
    assert personal[strategy.personal_modes[0]] > 0.5, personal
