"""The timm ViT models: shapes, resizing, deterministic init, local-only weight loading."""

from __future__ import annotations

import pytest
import torch

import fedlt.models.vit as vit_module
from fedlt.errors import ConfigError, DataError
from fedlt.models import MODELS, build_model
from fedlt.models.vit import ViTEncoder, find_cached_in21k, resize_to_model

TINY = {"img_size": 8, "patch_size": 4, "embed_dim": 24, "depth": 5, "num_heads": 3}


@pytest.fixture(autouse=True)
def _fixed_global_seed():
    """Inputs drawn with torch.randn in a test do not depend on the test order."""
    torch.manual_seed(0)


def test_registered_names():
    assert "vit_base_patch16_224" in MODELS
    assert "vit_tiny_test" in MODELS


def test_tiny_vit_shapes_and_resize():
    torch.manual_seed(0)
    model = build_model("vit_tiny_test", 7, (1, 8, 8), TINY)
    assert isinstance(model.backbone, ViTEncoder)
    assert model.feature_dim == 24
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 7)
    # 16×16 inputs are resized to the model's 8×8 before the patch embedding
    big = torch.randn(2, 1, 16, 16)
    small = resize_to_model(big, model.backbone.vit)
    assert small.shape == (2, 1, 8, 8)
    assert torch.allclose(model.backbone(big), model.backbone(small))


def test_default_tiny_vit_has_depth_for_prompt_layers():
    model = build_model("vit_tiny_test", 10, (3, 32, 32))
    assert len(model.backbone.vit.blocks) >= 5
    assert model.backbone(torch.randn(1, 3, 32, 32)).shape == (1, 96)


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_model("vit_tiny_test", 5, (1, 8, 8), {**TINY, "init_seed": 3})
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model("vit_tiny_test", 5, (1, 8, 8), {**TINY, "init_seed": 3})
    c = build_model("vit_tiny_test", 5, (1, 8, 8), {**TINY, "init_seed": 4})
    pa, pb, pc = (m.backbone.state_dict()["vit.pos_embed"] for m in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


@pytest.mark.parametrize(
    "options, key",
    [
        ({**TINY, "patch_size": 3}, "model.options.patch_size"),
        ({**TINY, "num_heads": 5}, "model.options.num_heads"),
        ({**TINY, "depth": 0}, "model.options.depth"),
    ],
)
def test_bad_geometry_names_the_option(options, key):
    with pytest.raises(ConfigError) as info:
        build_model("vit_tiny_test", 5, (1, 8, 8), options)
    assert info.value.key == key


def test_checkpoint_roundtrip_from_torch_state_dict(tmp_path):
    source = build_model("vit_tiny_test", 5, (1, 8, 8), {**TINY, "init_seed": 1})
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)  # keys 'backbone.vit.*' and 'head.*'
    loaded = build_model(
        "vit_tiny_test", 5, (1, 8, 8), {**TINY, "init_seed": 2, "checkpoint_path": str(path)}
    )
    for key, value in source.backbone.vit.state_dict().items():
        assert torch.equal(loaded.backbone.vit.state_dict()[key], value), key


def test_missing_checkpoint_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="checkpoint_path"):
        build_model(
            "vit_tiny_test", 5, (1, 8, 8), {**TINY, "checkpoint_path": str(tmp_path / "no.pth")}
        )


def test_checkpoint_of_another_shape_is_a_data_error(tmp_path):
    other = build_model("vit_tiny_test", 5, (1, 8, 8), {**TINY, "embed_dim": 48})
    path = tmp_path / "other.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(DataError, match="do not fit"):
        build_model("vit_tiny_test", 5, (1, 8, 8), {**TINY, "checkpoint_path": str(path)})


def test_in21k_without_local_weights_says_where_to_put_them(monkeypatch):
    monkeypatch.setattr(vit_module, "find_cached_in21k", lambda: None)
    with pytest.raises(DataError) as info:
        build_model("vit_base_patch16_224", 10, (3, 32, 32), {"pretrained": "in21k"})
    message = str(info.value)
    assert "checkpoint_path" in message
    assert "vit_base_patch16_224.augreg_in21k" in message


def test_bad_pretrained_value_names_the_option():
    with pytest.raises(ConfigError) as info:
        build_model("vit_base_patch16_224", 10, (3, 32, 32), {"pretrained": "in1k"})
    assert info.value.key == "model.options.pretrained"


def test_cached_npz_is_found_under_torch_home(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_cached_in21k() is None
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / vit_module.IN21K_NPZ_NAME).write_bytes(b"")
    assert find_cached_in21k() == folder / vit_module.IN21K_NPZ_NAME
