"""FedRoD (Chen & Chao, "On Bridging Generic and Personalized Federated Learning for Image
Classification", ICLR 2022).

Two predictors on one shared body f_θ: a generic head g_ψ trained for the balanced global
objective and a personal head p_k. Per local step (paper §4, Eq. 5-6; FedETF/FedLoGe
reference code):

    L_G = BSM(g(h), y) = CE(g(h) + log π_k, y),   π_k,c = n_k,c / n_k       -> step θ, ψ
    L_P = CE(g(h).detach() + p_k(h.detach()), y)                            -> step p_k

i.e. the body and generic head minimise the balanced softmax (Ren et al. 2020) under the
client's class prior, and the personal head learns a residual on top of the (detached)
generic logits from detached features. ``generic_loss: ce`` replaces BSM by plain
cross-entropy, which is what the official FedLoGe comparison code runs (docs/fedloge.md).
The server averages body and generic head (``backbone.*``, ``head.*``) by training-set size.

Prediction: generic ``g(h)``; personalised ``g(h) + p_k(h)`` (mode ``rod``; paper Eq. 6),
plus ``generic_head`` (g alone on the local test set) for reference.
Personal: p_k (``client_state`` keys ``p_head.*``), a ``Linear(d, C)`` with the same seeded
initialisation on every client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from strategies.federated import register
from strategies.federated._common import (
    balanced_softmax_loss,
    run_epochs,
    seeded_linear,
)
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


@dataclass
class FedRoDOptions:
    """``generic_loss``: ``balanced_softmax`` (the paper) or ``ce`` (the FedLoGe code)."""

    generic_loss: Literal["balanced_softmax", "ce"] = "balanced_softmax"


@register("fedrod")
class FedRoD(FederatedStrategy):
    Options = FedRoDOptions
    generic_modes = ("global",)
    personal_modes = ("rod", "generic_head")

    def __init__(self, options, model_factory, num_classes, device="cpu", seed=0) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        self.p_head = self._initial_p_head().to(self.device)

    def _initial_p_head(self):
        return seeded_linear(self.model.feature_dim, self.num_classes, self.seed, "fedrod_p_head")

    def init_client_state(self, client_id: int) -> StateDict:
        return cpu_state(self._initial_p_head(), "p_head.")

    def _load_personal(self, client_state: StateDict) -> None:
        state = client_state if client_state else self.init_client_state(-1)
        self.p_head.load_state_dict(sub_state(state, "p_head."), strict=True)

    def generic_loss(self, logits: Tensor, y: Tensor, class_counts: Tensor) -> Tensor:
        if self.options.generic_loss == "balanced_softmax":
            return balanced_softmax_loss(logits, y, class_counts)
        return F.cross_entropy(logits, y)

    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        self.load_global(global_state)
        self._load_personal(client_state)
        self.model.train()
        model, p_head = self.model, self.p_head
        counts = data.class_counts()
        opt_model = sgd(model.parameters(), train)
        opt_personal = sgd(p_head.parameters(), train)
        personal_sum = [0.0]

        def step(x: Tensor, y: Tensor) -> float:
            h = model.features(x)
            generic_logits = model.head(h)
            loss_g = self.generic_loss(generic_logits, y, counts)
            loss_p = F.cross_entropy(generic_logits.detach() + p_head(h.detach()), y)
            opt_model.zero_grad(set_to_none=True)
            opt_personal.zero_grad(set_to_none=True)
            (loss_g + loss_p).backward()  # disjoint parameters: each head gets its own loss
            opt_model.step()
            opt_personal.step()
            personal_sum[0] += float(loss_p.detach())
            return float(loss_g.detach())

        loss, steps = run_epochs(train.local_epochs, data, train.batch_size, generator, step)
        return LocalResult(
            update=cpu_state(model),
            num_examples=len(data),
            client_state=cpu_state(p_head, "p_head."),
            metrics={"train_loss": loss, "personal_loss": personal_sum[0] / max(steps, 1)},
        )

    def personal_predictor(
        self,
        global_state: StateDict,
        client_state: StateDict,
        train_data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> Predictor:
        self.load_global(global_state)
        self._load_personal(client_state)
        self.model.eval()
        model, p_head = self.model, self.p_head

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            h = model.features(x)
            generic_logits = model.head(h)
            return {"rod": generic_logits + p_head(h), "generic_head": generic_logits}

        return predict
