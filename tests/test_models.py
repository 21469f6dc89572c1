"""Every registered CNN/ResNet builds, has the backbone/head split strategies rely on, and
trains; bad names and options name their config key."""

from __future__ import annotations

import pytest
import torch

from fedlt.errors import ConfigError
from fedlt.models import MODELS, FeatureModel, build_model

FEATURE_MODELS = [n for n in MODELS.names() if not n.startswith("vit_")]
EXPECTED_DIM = {"resnet8": 64, "resnet20": 64, "resnet32": 64, "resnet18": 512, "resnet34": 512}


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_every_feature_model_has_backbone_head_split(name):
    torch.manual_seed(0)
    shape = (1, 8, 8) if name == "cnn_small" else (3, 32, 32)
    model = build_model(name, num_classes=7, image_shape=shape)
    assert isinstance(model, FeatureModel)
    x = torch.randn(4, *shape)
    h = model.features(x)
    assert h.shape == (4, model.feature_dim)
    if name in EXPECTED_DIM:
        assert model.feature_dim == EXPECTED_DIM[name]
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.allclose(logits, model.head(h), atol=1e-6)
    keys = set(model.state_dict())
    assert all(k.startswith(("backbone.", "head.")) for k in keys)
    # one SGD step changes the backbone: gradients flow through it
    before = [p.detach().clone() for p in model.backbone.parameters()]
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(
        not torch.equal(b, p) for b, p in zip(before, model.backbone.parameters(), strict=True)
    )


def test_cifar_resnets_have_no_maxpool_and_a_3x3_stem():
    model = build_model("resnet18", 10, (3, 32, 32))
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert model.backbone.stem[0].kernel_size == (3, 3)


def test_unknown_model_and_bad_options_name_the_key():
    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'resnet9'"):
        build_model("resnet9", 10, (3, 32, 32))
    with pytest.raises(ConfigError, match=r"model\.options"):
        build_model("resnet8", 10, (3, 32, 32), {"widht": 2})
