"""DualPrompt (Wang et al., ECCV 2022), on a frozen ViT.

- G-prompt (shared, ``g_prompt_length`` tokens) at layers 0–1; E-prompt pool
  (``pool_size`` prompts of ``e_prompt_length`` tokens, one set per layer) at layers 2–4,
  selected top-1 by key matching; prompts and keys ~ U(−1, 1) (official initialisation).
- Query: pre-logits CLS of the frozen, un-prompted ViT (paper §4.2).
- Attachment (``attachment``): ``prompt`` (default) = **prompt tuning** (append, run the
  block, truncate; the paper's "Pro-T"), the form the MVP spec prescribes for its
  DualPrompt-style prompts, so that DualPrompt and MVP differ only by MVP's additions;
  ``prefix`` = **prefix tuning** (the paper's preferred "Pre-T": each prompt is a pair of
  key/value prefixes of ``length`` tokens each, :func:`prompts.prefix_block`; the paper
  uses lengths 5 and 5). Defaults follow the MVP spec (pool 10, E-length 20) rather than
  the paper's task-indexed pool, since Si-Blurry has no task identities.
- Loss (paper Eq. 5): ``CE + λ·mean_i (1 − cos(q_i, k_{s_i}))``, λ = 1: the matching loss
  trains the keys. Linear head on the CLS feature, unexposed classes at −inf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedlt.configtools import require
from fedlt.errors import ConfigError
from strategies.continual import register
from strategies.continual.base import mask_unexposed
from strategies.continual.prompts import (
    PromptLearner,
    check_prompt_layers,
    cosine_distance,
    uniform_,
)


@dataclass
class DualPromptOptions:
    """DualPrompt hyperparameters (G layers 0–1, E layers 2–4, top-1, λ = 1).

    ``head_init``: ``timm`` (trunc-normal std 0.02, zero bias, the official code's head) or
    ``torch`` (``nn.Linear``'s U(±1/√D)); see :func:`strategies.continual.prompts.linear_head`.
    """

    lr: float = 5e-3
    pool_size: int = 10
    g_prompt_length: int = 5
    g_prompt_layers: list[int] = field(default_factory=lambda: [0, 1])
    e_prompt_length: int = 20
    e_prompt_layers: list[int] = field(default_factory=lambda: [2, 3, 4])
    pull_weight: float = 1.0
    query: Literal["final", "penultimate"] = "final"
    attachment: Literal["prompt", "prefix"] = "prompt"
    head_init: Literal["timm", "torch"] = "timm"

    def validate(self, prefix: str) -> None:
        require(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        require(self.pool_size >= 1, f"{prefix}.pool_size", "must be >= 1")
        for name in ("g_prompt_length", "e_prompt_length"):
            require(getattr(self, name) >= 1, f"{prefix}.{name}", "must be >= 1")
        require(self.pull_weight >= 0, f"{prefix}.pull_weight", "must be >= 0")


@register("dualprompt")
class DualPrompt(PromptLearner):
    """DualPrompt with prompt tuning and trainable keys."""

    Options = DualPromptOptions

    def __init__(
        self,
        options: DualPromptOptions,
        model_factory: Callable[[], nn.Module],
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        o, depth, dim, g = options, self.backbone.depth, self.backbone.embed_dim, self.generator
        key = "strategy.options"
        self.g_layers = check_prompt_layers(o.g_prompt_layers, depth, f"{key}.g_prompt_layers")
        self.e_layers = check_prompt_layers(o.e_prompt_layers, depth, f"{key}.e_prompt_layers")
        if set(self.g_layers) & set(self.e_layers):
            raise ConfigError(f"{key}.e_prompt_layers", "must not overlap g_prompt_layers")
        # prefix tuning: one key and one value prefix per layer (the extra axis of size 2)
        pair = (2,) if o.attachment == "prefix" else ()
        self.g_prompt = nn.Parameter(
            uniform_(torch.empty(len(self.g_layers), *pair, o.g_prompt_length, dim), -1.0, 1.0, g)
        )
        self.e_prompt = nn.Parameter(
            uniform_(
                torch.empty(o.pool_size, len(self.e_layers), *pair, o.e_prompt_length, dim),
                -1.0,
                1.0,
                g,
            )
        )
        self.keys = nn.Parameter(uniform_(torch.empty(o.pool_size, dim), -1.0, 1.0, g))
        self.build_optimizer(o.lr)

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Prompted CLS feature and the matching loss mean_i (1 − cos(q_i, k_{s_i}))."""
        tokens = self.backbone.tokens(x)
        query = self.backbone.query(tokens, final=self.options.query == "final")
        distance = cosine_distance(query, self.keys)
        selected = distance.detach().argmin(dim=1)
        batch = x.shape[0]
        g_prompt = self.g_prompt.unsqueeze(0).expand(batch, *self.g_prompt.shape)
        prompts = dict(zip(self.g_layers, g_prompt.unbind(1), strict=True))
        e = self.e_prompt[selected]  # (B, layers, [2,] L_e, D)
        prompts.update(zip(self.e_layers, e.unbind(1), strict=True))
        if self.options.attachment == "prefix":
            prefixes = {layer: (p[:, 0], p[:, 1]) for layer, p in prompts.items()}
            features = self.backbone.forward_prompted(tokens, layer_prefixes=prefixes)
        else:
            features = self.backbone.forward_prompted(tokens, prompts)
        pull = distance.gather(1, selected.unsqueeze(1)).mean()
        return features, pull

    def forward(self, x: Tensor, exposed: Tensor) -> Tensor:  # type: ignore[override]
        features, _ = self._features(x)
        return mask_unexposed(self.head(features), exposed)

    def train_step(self, x: Tensor, y: Tensor, exposed: Tensor) -> dict[str, float]:
        self.train()  # the frozen ViT stays in eval mode (PromptedViT.train)
        features, pull = self._features(x)
        logits = mask_unexposed(self.head(features), exposed)
        loss = F.cross_entropy(logits, y) + self.options.pull_weight * pull
        self.step(loss)
        return {
            "loss": float(loss.detach()),
            "loss_pull": float(pull.detach()),
            "train_acc": float((logits.argmax(1) == y).float().mean()),
        }


__all__ = ["DualPrompt", "DualPromptOptions"]
