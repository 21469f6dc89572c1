"""L2P: Learning to Prompt (Wang et al., CVPR 2022), on a frozen ViT.

- Prompt pool of ``pool_size`` prompts P_j (``prompt_length`` tokens each) with keys k_j;
  prompts and keys ~ U(−1, 1) (the official initialisation).
- Query q(x): pre-logits CLS of the frozen, un-prompted ViT (all blocks, final norm), the
  paper's choice (``query: penultimate`` uses MVP's query instead).
- Selection: the ``top_k`` keys of highest cos(q, k_j) (no frequency penalty).
- Prompt tuning at the input (paper §4.2): the selected prompts are appended to the
  embedded tokens and kept through every block; the classifier reads the CLS feature after
  the final norm (a linear head, unexposed classes at −inf).
- Loss (paper Eq. 5): ``CE + λ·Σ_{selected j} (1 − cos(q, k_j)) / B``, λ = 0.1. The
  surrogate term is what trains the keys (the official Si-Blurry L2P never trains them;
  here they do — tests check that they move).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedlt.configtools import require
from strategies.continual import register
from strategies.continual.base import mask_unexposed
from strategies.continual.prompts import PromptLearner, cosine_distance, uniform_


@dataclass
class L2POptions:
    """L2P hyperparameters (pool 10, length 5, top-5 and λ = 0.1 as in the paper).

    ``head_init``: ``timm`` (trunc-normal std 0.02, zero bias, the official code's head) or
    ``torch`` (``nn.Linear``'s U(±1/√D)); see :func:`strategies.continual.prompts.linear_head`.
    """

    lr: float = 5e-3
    pool_size: int = 10
    prompt_length: int = 5
    top_k: int = 5
    pull_weight: float = 0.1
    query: Literal["final", "penultimate"] = "final"
    head_init: Literal["timm", "torch"] = "timm"

    def validate(self, prefix: str) -> None:
        require(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        require(self.pool_size >= 1, f"{prefix}.pool_size", "must be >= 1")
        require(self.prompt_length >= 1, f"{prefix}.prompt_length", "must be >= 1")
        require(
            1 <= self.top_k <= self.pool_size,
            f"{prefix}.top_k",
            f"must lie in [1, pool_size={self.pool_size}], got {self.top_k}",
        )
        require(self.pull_weight >= 0, f"{prefix}.pull_weight", "must be >= 0")


@register("l2p")
class L2P(PromptLearner):
    """Learning to Prompt with trainable keys."""

    Options = L2POptions

    def __init__(
        self,
        options: L2POptions,
        model_factory: Callable[[], nn.Module],
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        dim, g = self.backbone.embed_dim, self.generator
        self.prompts = nn.Parameter(
            uniform_(torch.empty(options.pool_size, options.prompt_length, dim), -1.0, 1.0, g)
        )
        self.keys = nn.Parameter(uniform_(torch.empty(options.pool_size, dim), -1.0, 1.0, g))
        self.build_optimizer(options.lr)

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Prompted CLS feature and the pull term Σ_selected (1 − cos(q, k)) / B."""
        tokens = self.backbone.tokens(x)
        query = self.backbone.query(tokens, final=self.options.query == "final")
        distance = cosine_distance(query, self.keys)  # (B, P)
        selected = distance.detach().topk(self.options.top_k, dim=1, largest=False).indices
        prompts = self.prompts[selected].flatten(1, 2)  # (B, top_k·L, D)
        features = self.backbone.forward_prompted(tokens, input_prompts=prompts)
        pull = distance.gather(1, selected).sum() / x.shape[0]
        return features, pull

    def forward(self, x: Tensor, exposed: Tensor) -> Tensor:  # type: ignore[override]
        features, _ = self._features(x)
        return mask_unexposed(self.head(features), exposed)

    def train_step(self, x: Tensor, y: Tensor, exposed: Tensor) -> dict[str, float]:
        self.train()  # the frozen ViT stays in eval mode (PromptedViT.train)
        features, pull = self._features(x)
        logits = mask_unexposed(self.head(features), exposed)
        ce = F.cross_entropy(logits, y)
        loss = ce + self.options.pull_weight * pull
        self.step(loss)
        return {
            "loss": float(loss.detach()),
            "loss_pull": float(pull.detach()),
            "train_acc": float((logits.argmax(1) == y).float().mean()),
        }


__all__ = ["L2P", "L2POptions"]
