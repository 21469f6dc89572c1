"""FedLoGe (Xiao et al., "FedLoGe: Joint Local and Generic Federated Learning under
Long-tailed Data", ICLR 2024, arXiv 2401.08977), as the official code computes it
(spec ``fedloge.md``; deviations from the official code's bugs are named there).

Model: backbone θ (features h ∈ R^d) and three heads, all ``Linear(d, C)``:

- **SSE-C** (static sparse ETF, paper §4.1; :mod:`strategies.federated.sse_c`): frozen,
  identical on every client (rebuilt from the run seed on each worker), never sent and never
  in the global state.
- **ψ**, the auxiliary global head, trained on detached features and averaged.
- **φ_k**, the personal head of client k, trained on detached features; it lives only in
  the client state.

Local round (paper Algorithm 1; docs/fedloge.md), three SGD optimizers created afresh each round::

    h = θ(x)
    L1 = CE(SSE-C(h), y)        -> step θ only
    L2 = CE(ψ(h.detach()), y)   -> step ψ
    L3 = CE(φ_k(h.detach()), y) -> step φ_k

(the three gradients never mix: ψ and φ_k see detached features and SSE-C is frozen, so one
backward pass of ``L1 + L2 + L3`` gives each optimizer exactly its own loss's gradient).
Server: θ (BatchNorm buffers included) and ψ averaged with weights = local training-set
sizes, in partition-id order (the official permuted-weights bug is not reproduced).

GLA-FR, training-free realignment (paper §4.2, Eq. 7-8; docs/fedloge.md):

- generic: ``ψ̂_c = s·ψ_c/‖ψ_c‖₂`` (s = 1.7, bias unchanged), logits ``ψ̂ h + b_ψ``;
- personalised ("Euclidean norm transfer"):
  ``logits_k = (φ_k h + b_φk) + (ψ̃^k h + b_ψ)`` with ``ψ̃^k_c = ‖φ_{k,c}‖₂·ψ_c``.

Inference modes (first = headline): generic ``gla_fr`` (ψ̂), ``universal`` (SSE-C(θ(x)),
the official "generic" number), ``psi`` (raw ψ); personalised ``gla_fr`` (norm transfer)
and ``local_psi_phi`` (ψ + φ_k without norm transfer, the official "local" number).

Personal: φ_k (``client_state`` keys ``phi.weight``, ``phi.bias``). Global state:
``backbone.*`` and ``psi.*``; the FeatureModel's own ``head`` is unused and kept out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from fedlt.configtools import require
from strategies.federated import register
from strategies.federated._common import run_epochs, seeded_linear
from strategies.federated.base import (
    ClientData,
    FederatedStrategy,
    LocalResult,
    Predictor,
    StateDict,
    TrainConfig,
    cpu_state,
    sgd,
    sub_state,
)
from strategies.federated.sse_c import SSECSpec, official_spec, sse_c_layer


@dataclass
class FedLoGeOptions:
    """FedLoGe hyperparameters (defaults = the paper / official code).

    ``beta``: SSE-C sparsity (fraction of zero entries). ``tau``: target column norm.
    ``sse_steps`` / ``sse_lr``: Adam re-optimisation of the sparse ETF. ``scale``: GLA-FR
    generic norm s. ``bias``: SSE-C bias, ``default`` (PyTorch init from the seed, frozen,
    as in the official code) or ``none``. ``sse_cache``: keep built SSE-C matrices on disk
    (``sse_cache_dir``, default ``$FEDLT_CACHE_DIR`` or ``~/.cache/fedlt``).
    """

    beta: float = 0.6
    tau: float = 0.1
    sse_steps: int = 10_000
    sse_lr: float = 1e-4
    scale: float = 1.7
    bias: Literal["default", "none"] = "default"
    sse_cache: bool = True
    sse_cache_dir: str | None = None

    def validate(self, prefix: str) -> None:
        require(0.0 <= self.beta < 1.0, f"{prefix}.beta", f"must lie in [0, 1), got {self.beta}")
        require(self.tau > 0, f"{prefix}.tau", f"must be > 0, got {self.tau}")
        require(self.sse_steps >= 0, f"{prefix}.sse_steps", f"must be >= 0, got {self.sse_steps}")
        require(self.sse_lr > 0, f"{prefix}.sse_lr", f"must be > 0, got {self.sse_lr}")
        require(self.scale > 0, f"{prefix}.scale", f"must be > 0, got {self.scale}")


def generic_realigned_weight(psi_weight: Tensor, scale: float) -> Tensor:
    """GLA-FR generic head: row c becomes ``s·ψ_c/‖ψ_c‖₂`` (all class rows get norm s)."""
    return scale * psi_weight / psi_weight.norm(dim=1, keepdim=True).clamp_min(1e-12)


def norm_transferred_weight(psi_weight: Tensor, phi_weight: Tensor) -> Tensor:
    """GLA-FR personal transfer: row c becomes ``‖φ_{k,c}‖₂·ψ_c`` (raw ψ rows)."""
    return phi_weight.norm(dim=1, keepdim=True) * psi_weight


def personal_logits(
    h: Tensor, psi_weight: Tensor, psi_bias: Tensor, phi_weight: Tensor, phi_bias: Tensor
) -> Tensor:
    """``(φ_k h + b_φk) + (ψ̃^k h + b_ψ)`` with ``ψ̃^k = norm_transferred_weight(ψ, φ_k)``."""
    transferred = norm_transferred_weight(psi_weight, phi_weight)
    return F.linear(h, phi_weight, phi_bias) + F.linear(h, transferred, psi_bias)


@register("fedloge")
class FedLoGe(FederatedStrategy):
    """FedLoGe; ``official_stream`` (``data.rng: fedloge-official``, passed by the runtime):
    SSE-C is drawn as the official code draws it, continuing that numpy stream."""

    Options = FedLoGeOptions
    generic_modes = ("gla_fr", "universal", "psi")
    personal_modes = ("gla_fr", "local_psi_phi")
    uses_official_stream = True
    online_streams = True

    def __init__(
        self,
        options,
        model_factory,
        num_classes,
        device="cpu",
        seed=0,
        official_stream: np.random.RandomState | None = None,
    ) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        d = self.model.feature_dim
        self.sse_spec = SSECSpec(
            feature_dim=d,
            num_classes=num_classes,
            sparsity=options.beta,
            target_norm=options.tau,
            steps=options.sse_steps,
            lr=options.sse_lr,
            seed=seed,
        )
        if official_stream is not None:
            self.sse_spec = official_spec(self.sse_spec, official_stream)
        self.sse_c = sse_c_layer(
            self.sse_spec,
            bias=options.bias == "default",
            use_disk_cache=options.sse_cache,
            folder=options.sse_cache_dir,
            official_stream=official_stream,
        ).to(self.device)
        self.psi = self._initial_psi().to(self.device)
        self.phi = self._initial_phi().to(self.device)

    # -- states ---------------------------------------------------------------------
    def _initial_psi(self):
        return seeded_linear(self.model.feature_dim, self.num_classes, self.seed, "fedloge_psi")

    def _initial_phi(self):
        """φ_k starts from the same seeded init on every client (one copy of the model's head
        per client, as the official code deep-copies it)."""
        return seeded_linear(self.model.feature_dim, self.num_classes, self.seed, "fedloge_phi")

    def init_global_state(self) -> StateDict:
        backbone = self._fresh_model(self.seed).backbone
        return {**cpu_state(backbone, "backbone."), **cpu_state(self._initial_psi(), "psi.")}

    def init_client_state(self, client_id: int) -> StateDict:
        return cpu_state(self._initial_phi(), "phi.")

    def load_global(self, global_state: StateDict) -> None:
        unknown = [k for k in global_state if not k.startswith(("backbone.", "psi."))]
        if unknown:
            raise KeyError(f"FedLoGe global state has unexpected keys: {unknown[:5]}")
        self.model.backbone.load_state_dict(sub_state(global_state, "backbone."), strict=True)
        self.psi.load_state_dict(sub_state(global_state, "psi."), strict=True)

    def load_personal(self, client_state: StateDict) -> None:
        state = client_state if client_state else self.init_client_state(-1)
        self.phi.load_state_dict(sub_state(state, "phi."), strict=True)

    # -- training -------------------------------------------------------------------
    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        self.load_global(global_state)
        self.load_personal(client_state)
        self.model.train()
        opt_theta = sgd(self.model.backbone.parameters(), train)
        opt_psi = sgd(self.psi.parameters(), train)
        opt_phi = sgd(self.phi.parameters(), train)
        sums = {"loss_sse_c": 0.0, "loss_psi": 0.0, "loss_phi": 0.0}

        def step(x: Tensor, y: Tensor) -> float:
            h = self.model.features(x)
            detached = h.detach()
            l1 = F.cross_entropy(data.masked(self.sse_c(h)), y)
            l2 = F.cross_entropy(data.masked(self.psi(detached)), y)
            l3 = F.cross_entropy(data.masked(self.phi(detached)), y)
            for opt in (opt_theta, opt_psi, opt_phi):
                opt.zero_grad(set_to_none=True)
            (l1 + l2 + l3).backward()  # disjoint parameter sets: each gets only its own loss
            for opt in (opt_theta, opt_psi, opt_phi):
                opt.step()
            sums["loss_sse_c"] += float(l1.detach())
            sums["loss_psi"] += float(l2.detach())
            sums["loss_phi"] += float(l3.detach())
            return float(l1.detach())

        mean_l1, steps = run_epochs(train.local_epochs, data, train.batch_size, generator, step)
        metrics = {k: v / max(steps, 1) for k, v in sums.items()}
        metrics["train_loss"] = mean_l1
        return LocalResult(
            update={**cpu_state(self.model.backbone, "backbone."), **cpu_state(self.psi, "psi.")},
            num_examples=len(data),
            client_state=cpu_state(self.phi, "phi."),
            metrics=metrics,
        )

    # -- evaluation -----------------------------------------------------------------
    def generic_predictor(self, global_state: StateDict) -> Predictor:
        self.load_global(global_state)
        self.model.eval()
        with torch.no_grad():
            realigned = generic_realigned_weight(self.psi.weight, self.options.scale)
        model, psi, sse_c = self.model, self.psi, self.sse_c

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            h = model.features(x)
            return {
                "gla_fr": F.linear(h, realigned, psi.bias),
                "universal": sse_c(h),
                "psi": psi(h),
            }

        return predict

    def personal_predictor(
        self,
        global_state: StateDict,
        client_state: StateDict,
        train_data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> Predictor:
        self.load_global(global_state)
        self.load_personal(client_state)
        self.model.eval()
        model, psi, phi = self.model, self.psi, self.phi

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            h = model.features(x)
            return {
                "gla_fr": personal_logits(h, psi.weight, psi.bias, phi.weight, phi.bias),
                "local_psi_phi": phi(h) + psi(h),
            }

        return predict
