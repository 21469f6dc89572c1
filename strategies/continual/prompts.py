"""Prompt machinery shared by MVP, L2P and DualPrompt: a frozen timm ViT driven block by
block, key–query selection, and a learner base class.

Prompt tuning (Lester et al. 2021; DualPrompt's "Pro-T"; MVP, Moon et al. ICCV 2023): at a
prompted layer ``l`` the prompt tokens ``P_l`` (B, L_p, D) are **appended** to the token
sequence, block ``l`` runs on the longer sequence, and the output is **truncated** back to
the original token count, so only the first N tokens flow on::

    h_{l+1} = Block_l([h_l ; P_l])[:, :N]

Input-level prompts (L2P) are appended once before block 0 and kept through every block.
The transformer blocks are permutation-equivariant once positional embeddings are added, so
"append" and "insert after CLS" give identical outputs for the original tokens.

The backbone is frozen (``requires_grad_(False)``) and always in eval mode, even after
``learner.train()``. Its weights are **not** part of the learner's ``state_dict``: they are
rebuilt by the model factory (same config ⇒ same weights), which keeps ViT-B checkpoints at
a few MB instead of 344 MB.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedlt.errors import ConfigError
from fedlt.models.vit import resize_to_model, vit_of
from fedlt.seeding import torch_generator
from strategies.continual.base import ContinualLearner

BACKBONE_KEY = "backbone.vit."


def check_prompt_layers(layers: Sequence[int], depth: int, key: str) -> list[int]:
    """Validate prompt layer indices against the ViT depth (ConfigError naming ``key``)."""
    layers = [int(v) for v in layers]
    bad = [v for v in layers if not 0 <= v < depth]
    if bad:
        raise ConfigError(
            key, f"layers must lie in [0, {depth - 1}] for a ViT of depth {depth}, got {bad}"
        )
    if len(set(layers)) != len(layers):
        raise ConfigError(key, f"layers must be distinct, got {layers}")
    return layers


class PromptedViT(nn.Module):
    """A frozen timm ``VisionTransformer`` with prompt-tuning entry points.

    - :meth:`tokens`: resize, patch embedding, CLS, position embedding (no gradients).
    - :meth:`query`: CLS token of the un-prompted ViT, either after block L−1 without the
      final norm (MVP, ``final=False``) or after all blocks and the final norm (L2P,
      DualPrompt, ``final=True``), under ``no_grad``.
    - :meth:`forward_prompted`: the pre-logits CLS feature (final norm applied) with
      per-layer prompts (append, run block, truncate) and optional input prompts.
    """

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.vit.requires_grad_(False)
        self.vit.eval()
        self.depth = len(vit.blocks)
        self.embed_dim = int(vit.embed_dim)

    def train(self, mode: bool = True) -> PromptedViT:
        """Keep the frozen ViT in eval mode whatever ``mode`` is (no dropout, fixed norms)."""
        super().train(mode)
        self.vit.eval()
        return self

    @torch.no_grad()
    def tokens(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, N, D) embedded tokens (CLS first)."""
        vit = self.vit
        x = resize_to_model(x, vit)
        h = vit.patch_embed(x)
        h = vit._pos_embed(h)
        h = vit.patch_drop(h)
        return vit.norm_pre(h)

    @torch.no_grad()
    def query(self, tokens: Tensor, final: bool = False) -> Tensor:
        """CLS query of the un-prompted frozen ViT (see class docstring), (B, D)."""
        h = tokens
        blocks = self.vit.blocks if final else self.vit.blocks[:-1]
        for block in blocks:
            h = block(h)
        if final:
            return self.vit.forward_head(self.vit.norm(h), pre_logits=True)
        return h[:, 0]

    def forward_prompted(
        self,
        tokens: Tensor,
        layer_prompts: Mapping[int, Tensor] | None = None,
        input_prompts: Tensor | None = None,
        layer_prefixes: Mapping[int, tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        """Pre-logits CLS feature with prompts; ``layer_prompts[l]`` is (B, L_p, D) (prompt
        tuning), ``layer_prefixes[l]`` a pair of (B, L_p, D) key/value prefixes (prefix
        tuning, :func:`prefix_block`)."""
        layer_prompts = layer_prompts or {}
        layer_prefixes = layer_prefixes or {}
        h = tokens
        if input_prompts is not None:
            h = torch.cat([h, input_prompts], dim=1)
        for index, block in enumerate(self.vit.blocks):
            prompt = layer_prompts.get(index)
            prefix = layer_prefixes.get(index)
            if prompt is not None:
                count = h.shape[1]
                h = block(torch.cat([h, prompt], dim=1))[:, :count]
            elif prefix is not None:
                h = prefix_block(block, h, *prefix)
            else:
                h = block(h)
        return self.vit.forward_head(self.vit.norm(h), pre_logits=True)


def prefix_block(block: nn.Module, h: Tensor, prefix_k: Tensor, prefix_v: Tensor) -> Tensor:
    """A timm ``Block`` with prefix tuning (Li & Liang 2021; DualPrompt's "Pre-T"): the
    (B, L_p, D) prefixes are prepended to the attention keys and values of the tokens,
    ``Attn(q, [p_K; k], [p_V; v])``; queries, MLP and residuals are unchanged.

    With ``p_K = W_k·LN(P) + b_k`` and ``p_V = W_v·LN(P) + b_v`` this equals prompt tuning
    with tokens P (tested)."""
    attn = block.attn
    batch, count, _ = h.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    x = block.norm1(h)
    gate_layer = getattr(attn, "gate", None)
    gate = gate_layer(x).sigmoid() if gate_layer is not None else None
    qkv = attn.qkv(x).reshape(batch, count, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)

    def split(prefix: Tensor) -> Tensor:
        return prefix.reshape(batch, -1, heads, head_dim).transpose(1, 2)

    k = torch.cat([split(prefix_k), k], dim=2)
    v = torch.cat([split(prefix_v), v], dim=2)
    out = F.scaled_dot_product_attention(q, k, v)
    out = out.transpose(1, 2).reshape(batch, count, heads * head_dim)
    out = getattr(attn, "norm", nn.Identity())(out)
    if gate is not None:
        out = out * gate
    out = attn.proj_drop(attn.proj(out))
    h = h + block.drop_path1(block.ls1(out))
    return h + block.drop_path2(block.ls2(block.mlp(block.norm2(h))))


def cosine_distance(query: Tensor, keys: Tensor) -> Tensor:
    """``1 − cos(q_i, k_j)`` for every query/key pair: (B, D) × (P, D) -> (B, P)."""
    return 1.0 - F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T


def uniform_(tensor: Tensor, low: float, high: float, generator: torch.Generator) -> Tensor:
    """In-place U(low, high) from an explicit generator (no global RNG)."""
    with torch.no_grad():
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return tensor


def normal_(tensor: Tensor, generator: torch.Generator, std: float = 1.0) -> Tensor:
    """In-place N(0, std²) from an explicit generator."""
    with torch.no_grad():
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)
    return tensor


def trunc_normal_(
    tensor: Tensor,
    generator: torch.Generator,
    std: float = 1.0,
    mean: float = 0.0,
    a: float = -2.0,
    b: float = 2.0,
) -> Tensor:
    """In-place truncated normal from an explicit generator, draw for draw the algorithm of
    ``timm.layers.trunc_normal_`` (inverse-CDF of a uniform on [2Φ(α)−1, 2Φ(β)−1],
    α = (a − mean)/std, β = (b − mean)/std, then ``erfinv·std·√2 + mean``, clamped to
    [a, b]). As in timm, ``a`` and ``b`` are **absolute** bounds, not multiples of ``std``:
    with ``std=0.02`` and the default ±2 they sit at ±100σ, so this is N(0, 0.02²) in
    practice. Seeded like the global RNG, it returns timm's values bit for bit (tested)."""

    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    low, high = cdf((a - mean) / std), cdf((b - mean) / std)
    with torch.no_grad():
        tensor.uniform_(2.0 * low - 1.0, 2.0 * high - 1.0, generator=generator)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
    return tensor


HEAD_INITS = ("timm", "torch")


def linear_head(
    in_features: int, out_features: int, generator: torch.Generator, init: str = "timm"
) -> nn.Linear:
    """Linear classification head initialised from ``generator``.

    - ``timm`` (default): timm's ViT initialisation of Linear layers, which the official
      Si-Blurry code (Moon et al., ICCV 2023) gets for the head of MVP, L2P and DualPrompt
      through ``timm.create_model(..., num_classes=C)``: weight ~ trunc-normal(std 0.02,
      absolute bounds ±2, :func:`trunc_normal_`), bias = 0;
    - ``torch``: PyTorch's ``nn.Linear`` default ranges, weight and bias ~ U(±1/√D).
    """
    head = nn.Linear(in_features, out_features)
    if init == "timm":
        trunc_normal_(head.weight, generator, std=0.02)
        with torch.no_grad():
            head.bias.zero_()
    elif init == "torch":
        bound = 1.0 / in_features**0.5
        uniform_(head.weight, -bound, bound, generator)
        uniform_(head.bias, -bound, bound, generator)
    else:
        raise ValueError(f"head init must be one of {HEAD_INITS}, got {init!r}")
    return head


class PromptLearner(ContinualLearner):
    """Base class of the prompt learners: frozen :class:`PromptedViT` in ``self.backbone``,
    a linear head (:func:`linear_head`, initialised as ``options.head_init`` says), an Adam
    optimizer over the trainable parameters (built by :meth:`build_optimizer` at the end of
    the subclass constructor) whose state travels in ``state_dict()`` through
    ``get_extra_state``; the frozen ViT weights do not."""

    def __init__(
        self,
        options: Any,
        model_factory: Callable[[], nn.Module],
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        self.backbone = PromptedViT(vit_of(model_factory()))
        self.generator = torch_generator(seed, "prompt_init")
        init = getattr(options, "head_init", "timm")
        self.head = linear_head(self.backbone.embed_dim, num_classes, self.generator, init)
        self.optimizer: torch.optim.Optimizer | None = None
        self.register_state_dict_post_hook(_drop_frozen_backbone)
        self.register_load_state_dict_post_hook(_ignore_missing_backbone)

    def build_optimizer(self, lr: float) -> None:
        """Move to the device, then Adam over every trainable parameter (kept for the whole
        stream; a federated client starts a new one each round, :meth:`reset_optimizer`)."""
        self.to(self.device_)
        self.lr = lr
        self.optimizer = torch.optim.Adam(self.trainable_parameters(), lr=lr)

    def reset_optimizer(self) -> None:
        self.build_optimizer(self.lr)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def step(self, loss: Tensor) -> None:
        assert self.optimizer is not None, "subclass must call build_optimizer()"
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def get_extra_state(self) -> dict[str, Any]:
        """The optimizer state, deep-copied (``Optimizer.state_dict`` returns live tensors
        that the next step would overwrite in place)."""
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict()) if self.optimizer else None}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])


def _drop_frozen_backbone(module: nn.Module, state: dict, prefix: str, metadata: Any) -> None:
    for key in [k for k in state if k.startswith(prefix + BACKBONE_KEY)]:
        del state[key]


def _ignore_missing_backbone(module: nn.Module, incompatible: Any) -> None:
    missing = incompatible.missing_keys
    missing[:] = [k for k in missing if BACKBONE_KEY not in k]


def expand_prompt(prompt: Tensor, batch: int) -> Tensor:
    """A shared (L_p, D) prompt -> (B, L_p, D) view."""
    return prompt.unsqueeze(0).expand(batch, -1, -1)


def layer_map(layers: Iterable[int], prompts: Iterable[Tensor]) -> dict[int, Tensor]:
    return dict(zip(layers, prompts, strict=True))


__all__ = [
    "HEAD_INITS",
    "PromptLearner",
    "PromptedViT",
    "check_prompt_layers",
    "cosine_distance",
    "expand_prompt",
    "layer_map",
    "linear_head",
    "normal_",
    "prefix_block",
    "trunc_normal_",
    "uniform_",
]
