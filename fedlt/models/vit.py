"""Vision Transformers built with timm's ``VisionTransformer`` (frozen backbones for MVP & co).

Two registered models, both returning a :class:`~fedlt.models.base.FeatureModel` whose
``backbone`` is a :class:`ViTEncoder` (``backbone.vit`` is the timm model, with no head):

- ``vit_base_patch16_224``: ViT-B/16 (Dosovitskiy et al. 2021). ``pretrained: in21k`` loads
  the ImageNet-21k weights (timm tag ``augreg_in21k``) **only from local files**: the
  ``checkpoint_path`` option, or the Hugging Face / torch hub caches (nothing is ever
  downloaded). ``pretrained: none`` keeps timm's random initialisation.
- ``vit_tiny_test``: a small ViT for tests and CPU demos (patch 4 on 32×32 by default,
  width 96, depth 6, 3 heads), randomly initialised from ``init_seed`` or loaded from
  ``checkpoint_path``.

Inputs whose spatial size differs from ``img_size`` are resized with bilinear
``F.interpolate`` (:func:`resize_to_model`) before the patch embedding, so 8×8 digits or
32×32 CIFAR images can feed a 224×224 ViT. Images are expected already normalised (the
in21k weights were trained with mean = std = 0.5 per channel).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedlt.errors import ConfigError, DataError
from fedlt.models.base import FeatureModel

if TYPE_CHECKING:  # timm costs ~1.5 s to import: only models that need it load it
    from timm.models.vision_transformer import VisionTransformer

IN21K_HUB_ID = "timm/vit_base_patch16_224.augreg_in21k"
IN21K_NPZ_NAME = "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz"


def _register():
    from fedlt.models import MODELS

    return MODELS


def resize_to_model(x: Tensor, vit: VisionTransformer) -> Tensor:
    """Bilinearly resize ``x`` (B, C, H, W) to the ViT's ``img_size`` when it differs."""
    target = tuple(vit.patch_embed.img_size)
    if tuple(x.shape[-2:]) == target:
        return x
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False)


class ViTEncoder(nn.Module):
    """``x -> `` the pre-logits CLS feature of a timm ViT (after the final norm), D-dim.

    ``vit`` is exposed for prompt learners, which drive the blocks themselves
    (:mod:`strategies.continual.prompts`).
    """

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit
        self.feature_dim = int(vit.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = resize_to_model(x, self.vit)
        return self.vit.forward_head(self.vit.forward_features(x), pre_logits=True)


def _check_geometry(img_size: int, patch_size: int, embed_dim: int, depth: int, heads: int) -> None:
    for key, value in [
        ("img_size", img_size),
        ("patch_size", patch_size),
        ("embed_dim", embed_dim),
        ("depth", depth),
        ("num_heads", heads),
    ]:
        if value < 1:
            raise ConfigError(f"model.options.{key}", f"must be >= 1, got {value}")
    if img_size % patch_size:
        raise ConfigError(
            "model.options.patch_size",
            f"must divide img_size ({img_size}), got {patch_size}",
        )
    if embed_dim % heads:
        raise ConfigError(
            "model.options.num_heads", f"must divide embed_dim ({embed_dim}), got {heads}"
        )


def _build_vit(
    in_chans: int, img_size: int, patch_size: int, embed_dim: int, depth: int, heads: int
) -> VisionTransformer:
    _check_geometry(img_size, patch_size, embed_dim, depth, heads)
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=0,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        global_pool="token",
    )


def load_checkpoint_into(vit: VisionTransformer, path: str | Path) -> None:
    """Load ViT weights from a local ``.npz`` (original JAX format) or a torch state dict
    (``.pth``/``.pt``/``.bin``, or ``.safetensors``); classifier-head weights are ignored."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"model.options.checkpoint_path: file not found: {path}")
    try:
        if path.suffix == ".npz":
            vit.load_pretrained(str(path))
            return
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, wrong format
        raise DataError(f"model.options.checkpoint_path: cannot read {path} ({exc})") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict (a mapping of tensors)")
    prefixes = ("backbone.vit.", "vit.", "module.")
    cleaned: dict[str, Tensor] = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if not key.startswith("head."):
            cleaned[key] = value
    from timm.models.vision_transformer import checkpoint_filter_fn

    cleaned = checkpoint_filter_fn(cleaned, vit)
    cleaned = {k: v for k, v in cleaned.items() if not k.startswith("head.")}
    try:
        result = vit.load_state_dict(cleaned, strict=False)
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit this ViT ({exc})") from exc
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing:
        raise DataError(
            f"{path}: checkpoint lacks ViT weights {missing[:5]} (total {len(missing)})"
        )


def find_cached_in21k() -> Path | None:
    """The ImageNet-21k ViT-B/16 weights in a local cache, or ``None`` (never downloads).

    Looks in the Hugging Face hub cache (``HF_HOME``/``HF_HUB_CACHE``, repo
    ``timm/vit_base_patch16_224.augreg_in21k``) and in the torch hub checkpoint folder
    (``$TORCH_HOME/hub/checkpoints/B_16-i21k-...npz``).
    """
    try:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(IN21K_HUB_ID, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        pass
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    npz = torch_home / "hub" / "checkpoints" / IN21K_NPZ_NAME
    return npz if npz.is_file() else None


def _missing_weights_message() -> str:
    return (
        "pretrained: in21k needs the ImageNet-21k ViT-B/16 weights on this machine (nothing "
        "is downloaded). Either set model.options.checkpoint_path to a local .npz "
        f"({IN21K_NPZ_NAME}) or torch state dict, or put the Hugging Face files of "
        f"{IN21K_HUB_ID} in the hub cache (e.g. run `huggingface-cli download {IN21K_HUB_ID}` "
        "on a connected machine and copy ~/.cache/huggingface), or the .npz in "
        "$TORCH_HOME/hub/checkpoints/."
    )


def _feature_model(vit: VisionTransformer, num_classes: int) -> FeatureModel:
    return FeatureModel(ViTEncoder(vit), vit.embed_dim, num_classes)


def _seeded_init(builder: Callable[[], FeatureModel], seed: int) -> FeatureModel:
    """Run timm's (and the head's) random initialisation inside a forked, seeded RNG scope:
    deterministic, and the caller's global RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder()


@_register().register("vit_base_patch16_224")
def vit_base_patch16_224(
    num_classes: int,
    image_shape: tuple[int, int, int],
    pretrained: Literal["in21k", "none"] = "in21k",
    checkpoint_path: str | None = None,
    img_size: int = 224,
    patch_size: int = 16,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    init_seed: int = 0,
) -> FeatureModel:
    """ViT-B/16 (86M parameters), ImageNet-21k weights from local files only."""
    if pretrained not in ("in21k", "none"):
        raise ConfigError(
            "model.options.pretrained", f"expected 'in21k' or 'none', got {pretrained!r}"
        )
    weights: str | Path | None = checkpoint_path
    if not weights and pretrained == "in21k":
        weights = find_cached_in21k()
        if weights is None:
            raise DataError(f"model.options.pretrained: {_missing_weights_message()}")
    model = _seeded_init(
        lambda: _feature_model(
            _build_vit(image_shape[0], img_size, patch_size, embed_dim, depth, num_heads),
            num_classes,
        ),
        init_seed,
    )
    if weights:
        load_checkpoint_into(model.backbone.vit, weights)
    return model


@_register().register("vit_tiny_test")
def vit_tiny_test(
    num_classes: int,
    image_shape: tuple[int, int, int],
    img_size: int = 32,
    patch_size: int = 4,
    embed_dim: int = 96,
    depth: int = 6,
    num_heads: int = 3,
    checkpoint_path: str | None = None,
    init_seed: int = 0,
) -> FeatureModel:
    """Small ViT for tests and CPU demos (≈0.7M parameters at the defaults)."""
    model = _seeded_init(
        lambda: _feature_model(
            _build_vit(image_shape[0], img_size, patch_size, embed_dim, depth, num_heads),
            num_classes,
        ),
        init_seed,
    )
    if checkpoint_path:
        load_checkpoint_into(model.backbone.vit, checkpoint_path)
    return model


def vit_of(model: Any, key: str = "model.name") -> VisionTransformer:
    """The timm ViT inside a model built by this module (for prompt learners)."""
    backbone = getattr(model, "backbone", model)
    vit = getattr(backbone, "vit", backbone)
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(vit, VisionTransformer):
        raise ConfigError(
            key,
            "prompt learners need a ViT model (vit_base_patch16_224 or vit_tiny_test), "
            f"got {type(model).__name__}",
        )
    return vit


__all__ = [
    "ViTEncoder",
    "find_cached_in21k",
    "load_checkpoint_into",
    "resize_to_model",
    "vit_base_patch16_224",
    "vit_of",
    "vit_tiny_test",
]
