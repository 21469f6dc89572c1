"""The two options that switch fedlt's FedAvg to the official FedLoGe code's choices
(docs/fedloge.md, "Matching the official FedAvg"): ``model.options.init`` for the CIFAR
ResNets (default ``pytorch``, as the official code) and ``data.normalization``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from fedlt.config import load_config
from fedlt.data.base import ArrayDataset, DataSplits
from fedlt.data.prepare import IMAGENET_MEAN, IMAGENET_STD, normalization_stats
from fedlt.errors import ConfigError
from fedlt.federated.runtime import FederatedRuntime
from fedlt.models import build_model

RESNETS = ["resnet8", "resnet20", "resnet18"]
SHAPE = (3, 32, 32)


def _seeded(name: str, seed: int, **options: str) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, 10, SHAPE, options)


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _fresh_default_convs(model: nn.Module, seed: int) -> list[Tensor]:
    """The kernels fresh ``nn.Conv2d`` modules of the same shapes draw with PyTorch's default
    initialisation, in construction order, from ``seed``."""
    torch.manual_seed(seed)
    return [
        nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=False)
        .weight.detach()
        .clone()
        for c in _convs(model)
    ]


@pytest.mark.parametrize("name", RESNETS)
def test_pytorch_init_is_pytorchs_default_and_differs_from_kaiming(name):
    pytorch = _seeded(name, 5, init="pytorch")
    kaiming = _seeded(name, 5, init="kaiming")
    default = _seeded(name, 5)
    expected = _fresh_default_convs(pytorch, 5)
    for conv, ref in zip(_convs(pytorch), expected, strict=True):
        assert torch.equal(conv.weight, ref)
    for a, b in zip(_convs(pytorch), _convs(kaiming), strict=True):
        assert not torch.equal(a.weight, b.weight)
    # the default is PyTorch's own initialisation (the official code's), draw for draw
    for a, b in zip(_convs(default), _convs(pytorch), strict=True):
        assert torch.equal(a.weight, b.weight)


def test_kaiming_init_has_the_fan_out_std():
    conv = _convs(_seeded("resnet18", 0, init="kaiming"))[-2]  # a 512×512×3×3 kernel
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.02)


def test_unknown_init_names_the_key():
    with pytest.raises(ConfigError, match=r"model\.options\.init"):
        build_model("resnet8", 10, SHAPE, {"init": "xavier"})


def _runtime(tmp_path, *overrides: str) -> FederatedRuntime:
    cfg = load_config(
        None,
        [
            "data.source=synthetic",
            "data.options={num_classes: 4, image_size: 8, train_per_class: 20, test_per_class: 5}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.partition.num_clients=2",
            "strategy.name=fedavg",
            "model.name=resnet8",
            "resources.device=cpu",
            f"output_dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )
    return FederatedRuntime(cfg)


def test_imagenet_normalization_gives_the_runtime_imagenets_constants(tmp_path):
    runtime = _runtime(tmp_path, "data.normalization=imagenet")
    assert runtime.data.mean == IMAGENET_MEAN and runtime.data.std == IMAGENET_STD
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.equal(runtime.t.mean, mean) and torch.equal(runtime.t.std, std)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


def test_data_normalization_is_the_default_and_keeps_the_datas_statistics(tmp_path):
    default = _runtime(tmp_path)
    explicit = _runtime(tmp_path, "data.normalization=data")
    assert default.cfg.data.normalization == "data"
    assert default.data.mean == explicit.data.mean != IMAGENET_MEAN
    assert default.data.std == explicit.data.std != IMAGENET_STD


def test_imagenet_normalization_refuses_grayscale_and_bad_values():
    gray = ArrayDataset(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(2, np.int64), ["a"])
    splits = DataSplits(train=gray, test=gray, name="gray", mean=(0.3,), std=(0.2,))
    assert normalization_stats("data", splits) == ((0.3,), (0.2,))
    with pytest.raises(ConfigError, match=r"data\.normalization.*3-channel"):
        normalization_stats("imagenet", splits)
    with pytest.raises(ConfigError, match=r"data\.normalization"):
        load_config(None, ["data.normalization=cifar"])
