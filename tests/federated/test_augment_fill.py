"""The federated engine's random crop pads with black by default (torchvision's and the
official FedLoGe code's pixel 0), or with the mean colour (``federated.augment_fill: mean``)."""

from __future__ import annotations

import pytest
import torch

from fedlt.federated.runtime import FederatedRuntime


@pytest.mark.parametrize("fill", ["black", "mean"])
def test_crop_padding_colour(tiny_config, fill):
    cfg = tiny_config("federated.augment=true", f"federated.augment_fill={fill}")
    runtime = FederatedRuntime(cfg)
    data = runtime.client_train_data(0)
    x = torch.full((64, *data.x.shape[1:]), 5.0)  # a value no real pixel normalises to here
    out = data.augment(x, torch.Generator().manual_seed(0))
    expected = (-runtime.t.mean / runtime.t.std).reshape(-1) if fill == "black" else torch.zeros(1)
    for c in range(out.shape[1]):
        border = float(expected[c if expected.numel() > 1 else 0])
        values = sorted(out[:, c].unique().tolist())
        assert len(values) == 2  # the image's value and the border's, nothing else
        assert sorted([5.0, border]) == pytest.approx(values)


def test_default_is_black(tiny_config):
    assert tiny_config().federated.augment_fill == "black"
