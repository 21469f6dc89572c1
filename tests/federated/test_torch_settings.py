"""resources.num_threads / resources.flush_denormal reach torch in every worker."""

from __future__ import annotations

import pytest
import torch

from fedlt.devices import configure_torch
from fedlt.federated.runtime import FederatedRuntime

DENORMAL = 1e-40  # below float32's smallest normal number, 1.18e-38


def flushes_denormals() -> bool:
    return torch.tensor([DENORMAL], dtype=torch.float32).item() == 0.0


@pytest.fixture(autouse=True)
def restore_torch_settings():
    threads, flush = torch.get_num_threads(), flushes_denormals()
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush)


@pytest.mark.parametrize("flush", [True, False])
def test_configure_torch_sets_denormal_flushing(flush):
    configure_torch(0, flush)
    assert flushes_denormals() is flush
    product = torch.tensor([1e-20]) * torch.tensor([1e-20])  # 1e-40: denormal
    assert (product.item() == 0.0) is flush


def test_configure_torch_sets_threads_and_zero_keeps_them():
    configure_torch(1, True)
    assert torch.get_num_threads() == 1
    configure_torch(0, True)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("flush", [True, False])
def test_runtime_applies_resources(tiny_config, flush):
    FederatedRuntime(tiny_config(f"resources.flush_denormal={str(flush).lower()}"))
    assert flushes_denormals() is flush
    assert torch.get_num_threads() == 1
