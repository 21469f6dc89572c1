"""Models from timm and torchvision by name: ``timm:<name>`` and ``torchvision:<name>``.

The library model, without its classifier, becomes the ``backbone`` of a
:class:`~fedlt.models.base.FeatureModel`; fedlt adds the ``head`` (``nn.Linear(d, C)``), so
every strategy's backbone/head split works unchanged. Input channels (and, for models with a
fixed input size such as ViTs, the image size) come from the data. The feature dimension
``d`` is measured with one forward pass on zeros of the data's shape, which also reports an
input too small for the architecture before any training starts.

Weights come only from a local file, ``model.options.checkpoint_path`` (never downloaded):
either a fedlt state dict (``backbone.*`` / ``head.*`` keys) or the library model's own state
dict (its classifier is dropped and the first convolution adapted to the data's channels).
Every other option is passed to ``timm.create_model`` / ``torchvision.models.get_model``.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fedlt.errors import ConfigError, DataError
from fedlt.models.base import FeatureModel
from fedlt.registry import Registry

StateDict = dict[str, Tensor]
ModelFactory = Callable[..., nn.Module]

TIMM_PREFIX = "timm:"
TORCHVISION_PREFIX = "torchvision:"
CHECKPOINT_KEY = "model.options.checkpoint_path"

# Options fedlt sets itself: the head, the channels and the (local-only) weights.
_TIMM_RESERVED = {
    "num_classes": "fedlt adds its own head; the class count comes from the data",
    "in_chans": "the number of input channels comes from the data",
    "pretrained": "weights are never downloaded; give a local file as checkpoint_path",
    "pretrained_cfg_overlay": "weights are never downloaded; give a local file as checkpoint_path",
}
_TORCHVISION_RESERVED = {
    "num_classes": "fedlt adds its own head; the class count comes from the data",
    "weights": "weights are never downloaded; give a local file as checkpoint_path",
    "progress": "nothing is downloaded",
}
# Builder defaults that make a model return a plain tensor of features in training mode.
_TORCHVISION_DEFAULTS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


# --------------------------------------------------------------------------- names


def close_matches(name: str, choices: list[str], prefix: str = "", n: int = 5) -> str:
    """`` (close matches: 'a', 'b')`` for the choices nearest to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    return f" (close matches: {', '.join(repr(prefix + c) for c in close)})" if close else ""


def timm_names() -> list[str]:
    """Every timm architecture (without pretrained tags)."""
    import timm

    return list(timm.list_models())


def torchvision_names() -> list[str]:
    """torchvision's classification models (no detection, segmentation, video, quantized)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _check_timm_name(arch: str, key: str) -> None:
    import timm

    if not arch or not timm.is_model(arch):
        raise ConfigError(
            key,
            f"unknown timm model {arch!r}{close_matches(arch, timm_names(), TIMM_PREFIX)}; "
            "see timm.list_models()",
        )
    if "." in arch and arch not in timm.list_pretrained(arch):
        tags = timm.list_pretrained(arch.split(".")[0] + ".*")
        raise ConfigError(
            key,
            f"timm has no pretrained tag {arch!r}{close_matches(arch, tags, TIMM_PREFIX)}; "
            "see timm.list_pretrained()",
        )


def _check_torchvision_name(arch: str, key: str) -> None:
    names = torchvision_names()
    if arch not in names:
        suggestions = close_matches(arch, names, TORCHVISION_PREFIX)
        raise ConfigError(
            key,
            f"unknown torchvision model {arch!r}{suggestions}; "
            "see torchvision.models.list_models(module=torchvision.models)",
        )


def resolve_external(name: str, key: str = "model.name") -> ModelFactory | None:
    """The factory for ``timm:<arch>`` / ``torchvision:<arch>``, ``None`` for other names.

    Unknown architectures raise :class:`ConfigError` naming ``key`` with close matches.
    """
    if name.startswith(TIMM_PREFIX):
        arch = name[len(TIMM_PREFIX) :]
        _check_timm_name(arch, key)
        return functools.partial(build_timm, arch)
    if name.startswith(TORCHVISION_PREFIX):
        arch = name[len(TORCHVISION_PREFIX) :]
        _check_torchvision_name(arch, key)
        return functools.partial(build_torchvision, arch)
    return None


def library_hint(name: str) -> str:
    """For a bare name timm or torchvision knows: ``use 'timm:<name>' ...``; else ``""``."""
    import timm

    found = []
    if ":" not in name and timm.is_model(name):
        found.append(repr(TIMM_PREFIX + name))
    if ":" not in name and name in torchvision_names():
        found.append(repr(TORCHVISION_PREFIX + name))
    return f"for the library model write {' or '.join(found)}" if found else ""


class ModelRegistry(Registry[ModelFactory]):
    """The model registry: registered names, ``pkg.module:callable`` references, and the
    ``timm:`` / ``torchvision:`` prefixes."""

    def get(self, name: str, key: str = "") -> ModelFactory:
        if isinstance(name, str):
            external = resolve_external(name, key)
            if external is not None:
                return external
        try:
            return super().get(name, key)
        except ConfigError as exc:
            hint = library_hint(name) if isinstance(name, str) else ""
            if not hint:
                raise
            raise ConfigError(exc.key, f"{exc.detail}; {hint}") from None


# --------------------------------------------------------------------------- weights


@functools.lru_cache(maxsize=2)
def _read_cached(path: str, mtime_ns: int, size: int) -> StateDict:
    """Read a state dict once per file version (every client builds a model)."""
    del mtime_ns, size  # part of the cache key only
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state: Any = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled objects, wrong format
        raise DataError(f"{CHECKPOINT_KEY}: cannot read {path} ({exc})") from exc
    return _unwrap_state(state, path)


def _unwrap_state(state: Any, path: str) -> StateDict:
    """Accept ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers and DDP's ``module.``."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise DataError(f"{CHECKPOINT_KEY}: {path} is not a state dict (names -> tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_state_dict(path: str | Path) -> StateDict:
    """A state dict from a local ``.pt``/``.pth``/``.bin`` (``torch.load(weights_only=True)``)
    or ``.safetensors`` file; a fresh dict each call (its tensors are shared)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise DataError(f"{CHECKPOINT_KEY}: file not found: {file}")
    stat = file.stat()
    return dict(_read_cached(str(file), stat.st_mtime_ns, stat.st_size))


def is_feature_model_state(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` holds fedlt :class:`FeatureModel` weights (``backbone.*``/``head.*``)."""
    return bool(state) and all(k.startswith(("backbone.", "head.")) for k in state)


def load_feature_model_state(model: FeatureModel, state: StateDict, path: str | Path) -> None:
    """Load fedlt weights: the whole backbone, and the head when the file has one."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise DataError(f"{CHECKPOINT_KEY}: {path} does not fit this model ({exc})") from exc
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise DataError(
            f"{CHECKPOINT_KEY}: {path} does not fit this model (missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]})"
        )


def adapt_conv_weight(weight: Tensor, channels: int) -> Tensor:
    """A conv kernel (out, c, kh, kw) for ``channels`` inputs with about the same response:
    summed over input channels for 1 channel, else tiled and rescaled by ``c / channels``."""
    have = weight.shape[1]
    if channels == have:
        return weight
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    tiled = weight.repeat(1, math.ceil(channels / have), 1, 1)[:, :channels]
    return tiled * (have / channels)


# --------------------------------------------------------------------------- wrapping


def _reject_reserved(options: Mapping[str, Any], reserved: Mapping[str, str]) -> None:
    for key in options:
        if key in reserved:
            raise ConfigError(f"model.options.{key}", f"not allowed: {reserved[key]}")


def probe_feature_dim(backbone: nn.Module, image_shape: tuple[int, int, int], label: str) -> int:
    """The backbone's feature size, from one eval-mode forward pass on zeros."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(2, *image_shape))
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        c, h, w = image_shape
        raise ConfigError(
            "model.name",
            f"{label} cannot process {c}×{h}×{w} images ({exc}); larger images or other "
            "model.options (e.g. a smaller patch_size) may fit",
        ) from exc
    finally:
        backbone.train(was_training)
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(
            "model.options", f"{label} must return (batch, features) without its head, got {shape}"
        )
    return int(out.shape[1])


def _batchnorm_to_eval(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook: a training batch of one sample uses BatchNorm's running statistics
    (one sample has no batch statistics; at 1×1 feature maps BatchNorm would raise)."""
    x = args[0] if args else None
    if not (module.training and isinstance(x, Tensor) and x.shape[0] == 1):
        return
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            m.training = False
            m._fedlt_single_sample = True  # type: ignore[assignment]


def _batchnorm_restore(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
    """Forward hook (also after an exception): undo :func:`_batchnorm_to_eval`."""
    for m in module.modules():
        if getattr(m, "_fedlt_single_sample", False):
            m.training = True
            del m._fedlt_single_sample


def guard_single_sample_batches(backbone: nn.Module) -> nn.Module:
    """Let ``backbone`` train on a batch of one sample (clients' last batch can be one)."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules()):
        backbone.register_forward_pre_hook(_batchnorm_to_eval)
        backbone.register_forward_hook(_batchnorm_restore, always_call=True)
    return backbone


def _feature_model(
    backbone: nn.Module, num_classes: int, image_shape: tuple[int, int, int], label: str
) -> FeatureModel:
    dim = probe_feature_dim(backbone, image_shape, label)
    return FeatureModel(guard_single_sample_batches(backbone), dim, num_classes)


# --------------------------------------------------------------------------- timm


def _timm_size_option(arch: str, image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """``img_size`` from the data for timm models with a fixed input size (ViTs, Swin...)."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(arch)
    except RuntimeError as exc:  # an invalid pretrained tag
        raise ConfigError("model.name", f"timm:{arch}: {exc}") from exc
    if cfg is None or not cfg.fixed_input_size:
        return {}
    _, h, w = image_shape
    return {"img_size": h if h == w else (h, w)}


def _create_timm(arch: str, kwargs: dict[str, Any], implied: dict[str, Any]) -> nn.Module:
    """``timm.create_model``; an implied option the architecture rejects is dropped."""
    import timm

    try:
        return timm.create_model(arch, **implied, **kwargs)
    except TypeError as exc:
        rejected = [k for k in implied if f"'{k}'" in str(exc)]
        if not rejected:
            raise
        kept = {k: v for k, v in implied.items() if k not in rejected}
        return _create_timm(arch, kwargs, kept)


def build_timm(
    arch: str,
    num_classes: int,
    image_shape: tuple[int, int, int],
    checkpoint_path: str | None = None,
    **options: Any,
) -> FeatureModel:
    """``timm.create_model(arch, num_classes=0, in_chans=C, ...)`` under fedlt's head.

    A library checkpoint goes through timm's own loader (as a state dict, so it is adapted
    to the channels, the classifier dropped and ViT position embeddings resized).
    """
    _reject_reserved(options, _TIMM_RESERVED)
    label = TIMM_PREFIX + arch
    state = read_state_dict(checkpoint_path) if checkpoint_path else None
    library_state = state if state is not None and not is_feature_model_state(state) else None
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": image_shape[0], **options}
    if library_state is None:
        kwargs["pretrained"] = False
    else:
        kwargs["pretrained"] = True
        kwargs["pretrained_cfg_overlay"] = {"state_dict": library_state}
    implied = {k: v for k, v in _timm_size_option(arch, image_shape).items() if k not in options}
    try:
        backbone = _create_timm(arch, kwargs, implied)
    except (RuntimeError, KeyError) as exc:
        if library_state is None:
            raise ConfigError("model.options", f"{label}: {exc}") from exc
        raise DataError(
            f"{CHECKPOINT_KEY}: {checkpoint_path} does not fit {label} ({exc})"
        ) from exc
    except (AssertionError, ValueError) as exc:
        raise ConfigError("model.options", f"{label}: {exc}") from exc
    model = _feature_model(backbone, num_classes, image_shape, label)
    if state is not None and library_state is None:
        load_feature_model_state(model, state, checkpoint_path or "")
    return model


# --------------------------------------------------------------------------- torchvision


def _replace_module(model: nn.Module, qualified_name: str, new: nn.Module) -> None:
    parent_name, _, child = qualified_name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


def strip_classifier(model: nn.Module, num_classes: int, label: str) -> str:
    """Replace the model's final ``nn.Linear`` (its classifier) by ``nn.Identity``; return
    its qualified name."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != num_classes:
        raise ConfigError("model.name", f"{label} has no final nn.Linear classifier to replace")
    name = linears[-1][0]
    _replace_module(model, name, nn.Identity())
    return name


def adapt_first_conv(model: nn.Module, channels: int) -> str | None:
    """Give the model's first ``nn.Conv2d`` ``channels`` inputs (its initialised kernel
    adapted by :func:`adapt_conv_weight`); return its qualified name (None: no conv)."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    name, conv = convs[0]
    if conv.in_channels == channels:
        return name
    new = nn.Conv2d(
        channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(adapt_conv_weight(conv.weight, channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)  # type: ignore[union-attr]
    _replace_module(model, name, new)
    return name


def _torchvision_defaults(arch: str, image_shape: tuple[int, int, int]) -> dict[str, Any]:
    defaults = dict(_TORCHVISION_DEFAULTS.get(arch, {}))
    if arch.startswith("vit_"):  # torchvision's ViT checks its input size
        _, h, w = image_shape
        if h != w:
            raise ConfigError("model.name", f"torchvision:{arch} needs square images, got {h}×{w}")
        defaults["image_size"] = h
    return defaults


def load_library_state(
    model: nn.Module, state: StateDict, classifier: str, first_conv: str | None, path: str
) -> None:
    """Load a torchvision state dict into the headless model (classifier keys dropped, the
    first conv's kernel adapted to the model's channels)."""
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    if first_conv is not None and f"{first_conv}.weight" in state:
        channels = model.get_submodule(first_conv).in_channels
        key = f"{first_conv}.weight"
        state[key] = adapt_conv_weight(state[key], channels)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"{CHECKPOINT_KEY}: {path} does not fit this model ({exc})") from exc


def build_torchvision(
    arch: str,
    num_classes: int,
    image_shape: tuple[int, int, int],
    checkpoint_path: str | None = None,
    **options: Any,
) -> FeatureModel:
    """``torchvision.models.get_model(arch, weights=None, ...)`` with its classifier removed
    and its first conv taking the data's channels, under fedlt's head."""
    import torchvision

    _reject_reserved(options, _TORCHVISION_RESERVED)
    label = TORCHVISION_PREFIX + arch
    kwargs = {**_torchvision_defaults(arch, image_shape), **options}
    try:
        net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except (AssertionError, ValueError) as exc:
        raise ConfigError("model.options", f"{label}: {exc}") from exc
    classifier = strip_classifier(net, num_classes, label)
    first_conv = adapt_first_conv(net, image_shape[0])
    state = read_state_dict(checkpoint_path) if checkpoint_path else None
    if state is not None and not is_feature_model_state(state):
        load_library_state(net, state, classifier, first_conv, str(checkpoint_path))
    model = _feature_model(net, num_classes, image_shape, label)
    if state is not None and is_feature_model_state(state):
        load_feature_model_state(model, state, checkpoint_path or "")
    return model


__all__ = [
    "ModelRegistry",
    "adapt_conv_weight",
    "build_timm",
    "build_torchvision",
    "is_feature_model_state",
    "library_hint",
    "read_state_dict",
    "resolve_external",
    "timm_names",
    "torchvision_names",
]
