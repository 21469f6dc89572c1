"""MVP and MVP-R: Mask and Visual Prompt tuning (Moon et al., "Online Class Incremental
Learning on Stochastic Blurry Task Boundary via Mask and Visual Prompt Tuning", ICCV 2023).
Defaults follow the official code of the paper where it and the paper's text differ; the
other readings are options.

Per sample i with frozen-ViT query q_i (CLS after block L−1, no final norm):

- key selection (top-1 with frequency penalty):
  ``s_i = argmin_j d_ij·(n_j + 1)``, ``d_ij = 1 − cos(q_i, k_j)``, ``n_j`` = training
  selections of key j (updated in training only, applied at test too);
- prompts (prompt tuning, :mod:`strategies.continual.prompts`): shared G-prompt (5 tokens)
  at layers 0–1, E-prompt ``e_{s_i}`` (20 tokens) at layers 2–4; feature f_i = CLS after the
  final norm;
- instance-wise logit mask: ``z_i = (W f_i + b) ⊙ 2σ(M[s_i])`` then −inf on unexposed
  classes (train and test), M ∈ R^{P×C} initialised to −1;
- adaptive feature scaling (loss only): ``f̃_i = f_i / (1 − cos(W_{y_i}, f_i) + margin)``
  with the scale computed on detached W, f; predictions use f_i;
- gradient-similarity focal loss, CE on the AFS logits z̃, weighted by
  ``ign_i = 1 − cos(g_i, ḡ_{y_i})`` (:func:`gsf_ignorance`, closed form); g_i and ḡ come
  from the raw features and un-scaled masked logits (``gsf_features: raw``, official) or
  from the AFS ones (``afs``); ``batch``: ``CE_mean·[(1−α) + α·mean_i ign_i^γ]``,
  ``sample``: ``mean_i [(1−α) + α·ign_i^γ]·CE_i`` (:func:`classification_loss`);
- contrastive visual prompt tuning loss L_CVPT (:func:`cvpt_loss`, ``cvpt_pairing``);
- loss = GSF + w·L_CVPT; Adam(lr 5e-3) on head, prompts, keys and mask, never reset;
- head initialised as timm initialises a ViT's Linear layers (trunc-normal std 0.02, zero
  bias; ``head_init: timm``), as the official code's head is.

MVP-R is the same learner with ``uses_memory = True``: the engine mixes correctly labelled
replay samples into each batch (the official MVP-R mislabels them).
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
    expand_prompt,
    normal_,
)


@dataclass
class MVPOptions:
    """MVP hyperparameters (defaults = the paper's settings as the official code runs them).

    ``use_mask``, ``use_gsf``, ``use_afs``, ``use_cvpt``, ``use_penalty`` switch the
    components off one by one for ablations (all off ≈ DualPrompt-style prompt tuning with
    top-1 key matching and no key loss).

    - ``gsf_reduction``: ``batch`` (official) or ``sample``, see :func:`gsf_loss`;
    - ``gsf_features``: which features and logits the GSF gradients g_i, ḡ are computed
      from, ``raw`` (un-scaled features, non-AFS masked logits; official) or ``afs`` (the
      AFS-scaled ones the CE uses); the same thing when ``use_afs`` is off;
    - ``cvpt_pairing``: ``all_pairs`` (official broadcasting) or ``own_key``, see
      :func:`cvpt_loss`;
    - ``head_init``: ``timm`` (trunc-normal std 0.02, zero bias; official) or ``torch``
      (``nn.Linear``'s U(±1/√D)), see :func:`strategies.continual.prompts.linear_head`.
    """

    lr: float = 5e-3
    pool_size: int = 10
    g_prompt_length: int = 5
    g_prompt_layers: list[int] = field(default_factory=lambda: [0, 1])
    e_prompt_length: int = 20
    e_prompt_layers: list[int] = field(default_factory=lambda: [2, 3, 4])
    mask_init: float = -1.0
    use_mask: bool = True
    use_penalty: bool = True
    use_gsf: bool = True
    gsf_alpha: float = 0.5
    gsf_gamma: float = 2.0
    gsf_reduction: Literal["batch", "sample"] = "batch"
    gsf_features: Literal["raw", "afs"] = "raw"
    use_afs: bool = True
    afs_margin: float = 0.5
    use_cvpt: bool = True
    cvpt_weight: float = 1.0
    cvpt_pairing: Literal["all_pairs", "own_key"] = "all_pairs"
    head_init: Literal["timm", "torch"] = "timm"

    def validate(self, prefix: str) -> None:
        require(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        require(self.pool_size >= 1, f"{prefix}.pool_size", f"must be >= 1, got {self.pool_size}")
        for name in ("g_prompt_length", "e_prompt_length"):
            value = getattr(self, name)
            require(value >= 1, f"{prefix}.{name}", f"must be >= 1, got {value}")
        require(0 <= self.gsf_alpha <= 1, f"{prefix}.gsf_alpha", "must lie in [0, 1]")
        require(self.gsf_gamma >= 0, f"{prefix}.gsf_gamma", "must be >= 0")
        require(self.afs_margin > 0, f"{prefix}.afs_margin", "must be > 0 (divides by it)")
        require(self.cvpt_weight >= 0, f"{prefix}.cvpt_weight", "must be >= 0")


# ---------------------------------------------------------------- formulas (unit-tested)


def penalised_selection(distance: Tensor, counts: Tensor, use_penalty: bool = True) -> Tensor:
    """Top-1 key per sample: ``argmin_j d_ij·(n_j + 1)`` (or ``argmin_j d_ij``)."""
    score = distance * (counts.to(distance.dtype) + 1.0) if use_penalty else distance
    return score.argmin(dim=1)


def mask_scale(mask: Tensor, selected: Tensor) -> Tensor:
    """Instance-wise logit scale ``2σ(M[s_i])`` (B, C)."""
    return 2.0 * torch.sigmoid(mask[selected])


def scaled_logits(features: Tensor, head: nn.Linear, scale: Tensor, exposed: Tensor) -> Tensor:
    """``z = (W f + b) ⊙ scale`` with −inf on unexposed classes."""
    return mask_unexposed(head(features) * scale, exposed)


def afs_features(features: Tensor, weight: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Adaptive feature scaling ``f / (1 − cos(W_y, f) + margin)``; the divisor uses
    detached W and f, so gradients flow through the numerator only."""
    cos = F.cosine_similarity(weight.detach()[labels], features.detach(), dim=1)
    return features / (1.0 - cos + margin).unsqueeze(1)


CVPT_PAIRINGS = ("all_pairs", "own_key")


def cvpt_loss(
    distance: Tensor,
    keys: Tensor,
    selected: Tensor,
    counts: Tensor,
    pairing: str = "all_pairs",
) -> Tensor:
    """Contrastive visual prompt tuning loss L_CVPT (Moon et al., ICCV 2023).

    With ``m = n + 1`` (n = training selections of each key), key–key cosine distances
    ``D[a, b] = 1 − cos(k_a, k_b)`` (P×P), the selected key ``s_i`` and the query-to-selected-key
    distance ``d_i = 1 − cos(q_i, k_{s_i})`` of the B samples::

        L = −log( A / (Q + A) + 1e−6 )

    ``all_pairs`` (default, the official code): it writes ``D[s]/m[s]`` and ``d/m[s]``
    with ``s`` of shape (B, 1), so ``D[s]`` is (B, 1, P), ``m[s]`` is (B, 1) and ``d`` is
    (B,); broadcasting gives a (B, B, P) tensor with entry [i, j, c] = D[s_i, c] / m[s_j]
    and a (B, B) one with entry [j, i] = d_i / m[s_j]: every sample's distances are divided
    by every batch sample's key count before the means::

        A = 1/(B²P) Σ_i Σ_j Σ_c exp(D[s_i, c] / m[s_j])
        Q = 1/B²    Σ_i Σ_j     exp(d_i / m[s_j])

    ``own_key``: each sample paired with its own key's count only::

        A = 1/(BP) Σ_i Σ_c exp(D[s_i, c] / m[s_i])
        Q = 1/B    Σ_i     exp(d_i / m[s_i])

    The two agree whenever all selected keys have the same count. ``distance`` is the
    (B, P) query–key distance matrix (gradient flows to the keys through it and ``D``).
    """
    mass = (counts.to(keys.dtype) + 1.0)[selected]  # (B,) = m[s_i]
    key_distance = cosine_distance(keys, keys)[selected]  # (B, P) = D[s_i, :]
    d = distance.gather(1, selected.unsqueeze(1)).squeeze(1)  # (B,) = d_i
    if pairing == "all_pairs":
        attract = torch.exp(key_distance.unsqueeze(1) / mass.view(1, -1, 1)).mean()  # (B,B,P)
        pull = torch.exp(d.unsqueeze(0) / mass.unsqueeze(1)).mean()  # (B, B)
    elif pairing == "own_key":
        attract = torch.exp(key_distance / mass.unsqueeze(1)).mean()  # (B, P)
        pull = torch.exp(d / mass).mean()  # (B,)
    else:
        raise ValueError(f"cvpt_pairing must be one of {CVPT_PAIRINGS}, got {pairing!r}")
    return -torch.log(attract / (pull + attract) + 1e-6)


def gsf_ignorance(features: Tensor, logits: Tensor, scale: Tensor, labels: Tensor) -> Tensor:
    """``ign_i = 1 − cos(g_i, ḡ_{y_i})`` in closed form, one batched op, no backward.

    For ``z_ic = s_ic·(W_c·f_i + b_c)`` (s = mask scale; unexposed classes get p = 0) and
    ``CE_i = −log softmax(z_i)_{y_i}``::

        ∂CE_i/∂z_ic = p_ic − [c = y_i],   ∂z_ic/∂W_c = s_ic·f_i
        g_i   = ∂CE_i/∂W_{y_i} = (p_{i,y_i} − 1)·s_{i,y_i}·f_i
        ḡ_c   = ∂(mean_j CE_j)/∂W_c = (1/B)·Σ_j (p_jc − [c = y_j])·s_jc·f_j
              i.e. Ḡ = ((P − Y) ⊙ S)ᵀ F / B  (C×D)

    ``features`` and ``logits`` must belong together (``logits`` computed from
    ``features``): the raw features and un-scaled logits (``gsf_features: raw``) or the
    AFS-scaled ones (``afs``), see :func:`classification_loss`. Everything is treated as a
    constant (a copy of the head, features detached).
    """
    features, logits, scale = features.detach(), logits.detach(), scale.detach()
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    residual = (probs - onehot) * scale  # (B, C); zero on unexposed classes
    per_sample = residual.gather(1, labels.unsqueeze(1)) * features  # (B, D) = g_i
    batch_grad = residual.T @ features / features.shape[0]  # (C, D) = Ḡ
    return 1.0 - F.cosine_similarity(per_sample, batch_grad[labels], dim=1)


def gsf_ignorance_reference(
    features: Tensor, head: nn.Linear, scale: Tensor, exposed: Tensor, labels: Tensor
) -> Tensor:
    """The same quantity by autograd, one backward per sample (tests and benchmark only)."""
    weight = head.weight.detach().clone().requires_grad_(True)
    bias = head.bias.detach()
    feats, scale = features.detach(), scale.detach()

    def ce(rows: slice | Tensor) -> Tensor:
        z = mask_unexposed((feats[rows] @ weight.T + bias) * scale[rows], exposed)
        return F.cross_entropy(z, labels[rows])

    (mean_grad,) = torch.autograd.grad(ce(slice(None)), weight)
    ign = []
    for i in range(feats.shape[0]):
        (grad_i,) = torch.autograd.grad(ce(slice(i, i + 1)), weight)
        y = labels[i]
        ign.append(1.0 - F.cosine_similarity(grad_i[y], mean_grad[y], dim=0))
    return torch.stack(ign)


def gsf_loss(
    ce: Tensor, ignorance: Tensor, alpha: float, gamma: float, reduction: str = "batch"
) -> Tensor:
    """Gradient-similarity focal loss from per-sample CE_i and (detached) ign_i.

    ``batch`` (official code): ``mean(CE)·[(1−α) + α·mean(ign^γ)]``;
    ``sample`` (paper's likely intent): ``mean([(1−α) + α·ign^γ]·CE)``.
    """
    weight = ignorance.detach().clamp_min(0.0) ** gamma
    if reduction == "batch":
        return ce.mean() * ((1.0 - alpha) + alpha * weight.mean())
    if reduction == "sample":
        return (((1.0 - alpha) + alpha * weight) * ce).mean()
    raise ValueError(f"gsf_reduction must be 'batch' or 'sample', got {reduction!r}")


GSF_FEATURES = ("raw", "afs")


def classification_loss(
    features: Tensor,
    head: nn.Linear,
    scale: Tensor,
    exposed: Tensor,
    labels: Tensor,
    options: MVPOptions,
) -> tuple[Tensor, Tensor]:
    """MVP's classification term and the (AFS) logits it uses, from the prompted features.

    The CE is taken on ``z̃_i = (W f̃_i + b) ⊙ s_i`` (exposed-class mask applied), with
    ``f̃_i = afs(f_i)`` when ``use_afs`` is on (else ``f̃_i = f_i``). With ``use_gsf`` it
    is weighted by ``ign_i = 1 − cos(g_i, ḡ_{y_i})`` (:func:`gsf_ignorance`,
    :func:`gsf_loss`) where g_i and ḡ are the head-row gradients of the CE of
    ``gsf_features``:

    - ``raw`` (default, the official code): of ``z_i = (W f_i + b) ⊙ s_i``, the un-scaled
      features and non-AFS masked logits, although the CE itself uses z̃;
    - ``afs``: of z̃ itself, ``∂CE(z̃_i)/∂W``, with the AFS-scaled features.

    Returns ``(loss_cls, z̃)``.
    """
    o = options
    loss_features = (
        afs_features(features, head.weight, labels, o.afs_margin) if o.use_afs else features
    )
    logits = scaled_logits(loss_features, head, scale, exposed)
    ce = F.cross_entropy(logits, labels, reduction="none")
    if not o.use_gsf:
        return ce.mean(), logits
    if o.gsf_features == "raw":
        gsf_feats = features.detach()
        with torch.no_grad():
            gsf_logits = scaled_logits(gsf_feats, head, scale, exposed) if o.use_afs else logits
    elif o.gsf_features == "afs":
        gsf_feats, gsf_logits = loss_features, logits
    else:
        raise ValueError(f"gsf_features must be one of {GSF_FEATURES}, got {o.gsf_features!r}")
    ignorance = gsf_ignorance(gsf_feats, gsf_logits, scale, labels)
    return gsf_loss(ce, ignorance, o.gsf_alpha, o.gsf_gamma, o.gsf_reduction), logits


# ---------------------------------------------------------------- learner


@register("mvp")
class MVP(PromptLearner):
    """MVP without replay. Trainable: head, G/E-prompts, keys, logit mask."""

    Options = MVPOptions
    uses_memory = False

    def __init__(
        self,
        options: MVPOptions,
        model_factory: Callable[[], nn.Module],
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        o = options
        depth, dim = self.backbone.depth, self.backbone.embed_dim
        key = "strategy.options"
        self.g_layers = check_prompt_layers(o.g_prompt_layers, depth, f"{key}.g_prompt_layers")
        self.e_layers = check_prompt_layers(o.e_prompt_layers, depth, f"{key}.e_prompt_layers")
        overlap = set(self.g_layers) & set(self.e_layers)
        if overlap:
            raise ConfigError(
                f"{key}.e_prompt_layers", f"overlaps g_prompt_layers at {sorted(overlap)}"
            )
        g = self.generator
        self.g_prompt = nn.Parameter(
            normal_(torch.empty(len(self.g_layers), o.g_prompt_length, dim), g)
        )
        self.e_prompt = nn.Parameter(
            normal_(torch.empty(o.pool_size, len(self.e_layers), o.e_prompt_length, dim), g)
        )
        self.keys = nn.Parameter(normal_(torch.empty(o.pool_size, dim), g))
        self.mask = nn.Parameter(torch.full((o.pool_size, num_classes), float(o.mask_init)))
        self.register_buffer("counts", torch.zeros(o.pool_size, dtype=torch.long))
        self.build_optimizer(o.lr)

    # -- shared forward pieces
    def _select(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(B, P) query–key distances (grad to keys) and the selected key per sample."""
        query = self.backbone.query(tokens, final=False)
        distance = cosine_distance(query, self.keys)
        selected = penalised_selection(distance.detach(), self.counts, self.options.use_penalty)
        return distance, selected

    def _features(self, tokens: Tensor, selected: Tensor) -> Tensor:
        batch = tokens.shape[0]
        prompts = {
            layer: expand_prompt(self.g_prompt[i], batch) for i, layer in enumerate(self.g_layers)
        }
        e = self.e_prompt[selected]  # (B, layers, L_e, D)
        for i, layer in enumerate(self.e_layers):
            prompts[layer] = e[:, i]
        return self.backbone.forward_prompted(tokens, prompts)

    def _scale(self, selected: Tensor, like: Tensor) -> Tensor:
        if self.options.use_mask:
            return mask_scale(self.mask, selected)
        return torch.ones(selected.shape[0], self.num_classes, device=like.device, dtype=like.dtype)

    def forward(self, x: Tensor, exposed: Tensor) -> Tensor:  # type: ignore[override]
        """Masked logits ``(W f + b) ⊙ 2σ(M[s])`` with the frequency-penalised selection."""
        tokens = self.backbone.tokens(x)
        _, selected = self._select(tokens)
        features = self._features(tokens, selected)
        return scaled_logits(features, self.head, self._scale(selected, features), exposed)

    def train_step(self, x: Tensor, y: Tensor, exposed: Tensor) -> dict[str, float]:
        self.train()  # the frozen ViT stays in eval mode (PromptedViT.train)
        o = self.options
        tokens = self.backbone.tokens(x)
        distance, selected = self._select(tokens)
        features = self._features(tokens, selected)
        scale = self._scale(selected, features)
        loss_cls, logits = classification_loss(features, self.head, scale, exposed, y, o)
        loss = loss_cls
        loss_cvpt = torch.zeros((), device=loss.device)
        if o.use_cvpt:
            loss_cvpt = cvpt_loss(distance, self.keys, selected, self.counts, o.cvpt_pairing)
            loss = loss + o.cvpt_weight * loss_cvpt
        self.step(loss)
        with torch.no_grad():
            self.counts += torch.bincount(selected, minlength=o.pool_size)
            accuracy = (logits.argmax(1) == y).float().mean()
        return {
            "loss": float(loss.detach()),
            "loss_cls": float(loss_cls.detach()),
            "loss_cvpt": float(loss_cvpt.detach()),
            "train_acc": float(accuracy),
        }


@register("mvp_r")
class MVPR(MVP):
    """MVP-R: MVP plus a reservoir replay memory owned by the engine (correct labels)."""

    uses_memory = True


__all__ = [
    "CVPT_PAIRINGS",
    "GSF_FEATURES",
    "MVP",
    "MVPR",
    "MVPOptions",
    "afs_features",
    "classification_loss",
    "cvpt_loss",
    "gsf_ignorance",
    "gsf_ignorance_reference",
    "gsf_loss",
    "mask_scale",
    "penalised_selection",
    "scaled_logits",
]
