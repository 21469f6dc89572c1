"""CIFAR ResNets: ResNet-8/20/32 (He et al. 2016, §4.2: 3 stages of 16/32/64 channels) and
ResNet-18/34 (basic blocks, 64-512 channels) with a 3×3 stem and no max-pool, as used by
FedLoGe (512-d features for ResNet-18/34).

``init`` (``model.options.init``): ``pytorch`` (the default) keeps PyTorch's default
(``nn.Conv2d.reset_parameters``: Kaiming uniform with a=√5), as the official FedLoGe code
does — the largest single cause of the FedAvg gap to it (docs/results/fedavg_gap.md);
``kaiming`` draws every conv kernel from Kaiming normal, fan-out (He et al., ICCV 2015),
fedlt's choice before that measurement (docs/fedloge.md, "Matching the official FedAvg")."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from fedlt.errors import ConfigError
from fedlt.models.base import FeatureModel

ConvInit = Literal["kaiming", "pytorch"]
CONV_INITS: tuple[str, ...] = ("kaiming", "pytorch")


def _register():
    from fedlt.models import MODELS

    return MODELS


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetBackbone(nn.Module):
    """3×3 stem → stages of basic blocks → global average pooling → features."""

    def __init__(
        self, in_channels: int, widths: list[int], blocks: list[int], init: ConvInit = "pytorch"
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, width, stride))
                in_planes = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = in_planes
        init_convs(self, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.layers(self.stem(x))).flatten(1)


def init_convs(module: nn.Module, init: ConvInit) -> None:
    """Initialise the conv kernels of ``module`` by ``init`` (module docstring): ``kaiming``
    redraws them from Kaiming normal (fan-out, ReLU gain); ``pytorch`` leaves them as
    ``nn.Conv2d`` drew them. Anything else raises ConfigError naming ``model.options.init``."""
    if init not in CONV_INITS:
        raise ConfigError("model.options.init", f"must be one of {list(CONV_INITS)}, got {init!r}")
    if init == "pytorch":
        return
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _cifar_resnet(
    depth: int, num_classes: int, image_shape: tuple[int, int, int], init: ConvInit
) -> FeatureModel:
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    backbone = ResNetBackbone(image_shape[0], [16, 32, 64], [n, n, n], init)
    return FeatureModel(backbone, backbone.out_dim, num_classes)


def _wide_resnet(
    blocks: list[int], num_classes: int, image_shape: tuple[int, int, int], init: ConvInit
) -> FeatureModel:
    backbone = ResNetBackbone(image_shape[0], [64, 128, 256, 512], blocks, init)
    return FeatureModel(backbone, backbone.out_dim, num_classes)


_MODELS = _register()


@_MODELS.register("resnet8")
def resnet8(
    num_classes: int, image_shape: tuple[int, int, int], init: ConvInit = "pytorch"
) -> FeatureModel:
    return _cifar_resnet(8, num_classes, image_shape, init)


@_MODELS.register("resnet20")
def resnet20(
    num_classes: int, image_shape: tuple[int, int, int], init: ConvInit = "pytorch"
) -> FeatureModel:
    return _cifar_resnet(20, num_classes, image_shape, init)


@_MODELS.register("resnet32")
def resnet32(
    num_classes: int, image_shape: tuple[int, int, int], init: ConvInit = "pytorch"
) -> FeatureModel:
    return _cifar_resnet(32, num_classes, image_shape, init)


@_MODELS.register("resnet18")
def resnet18(
    num_classes: int, image_shape: tuple[int, int, int], init: ConvInit = "pytorch"
) -> FeatureModel:
    return _wide_resnet([2, 2, 2, 2], num_classes, image_shape, init)


@_MODELS.register("resnet34")
def resnet34(
    num_classes: int, image_shape: tuple[int, int, int], init: ConvInit = "pytorch"
) -> FeatureModel:
    return _wide_resnet([3, 4, 6, 3], num_classes, image_shape, init)
