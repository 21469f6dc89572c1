"""Ditto (Li, Hu, Beirami & Smith, "Ditto: Fair and Robust Federated Learning Through
Personalization", ICML 2021).

Bi-level objective (paper Eq. 2): the global model w is trained as in FedAvg, and each
client keeps a personal model v_k solving

    min_{v_k}  F_k(v_k) + (λ/2)·‖v_k − w*‖²,

optimised by local SGD on ``F_k(v_k) + (λ/2)·‖v_k − w^t‖²`` (paper Algorithm 1, with w^t
the global model the client received this round) for ``personal_epochs`` epochs, followed by
the FedAvg local update of w. The proximal term runs over parameters (not BatchNorm
buffers). Order per round: personal update first, then the global update, as in the
FedETF/FedLoGe reference code. ``lam`` defaults to 0.1 (the middle of Ditto's grid
{0.05, 0.1, 0.2, 0.5, 1, 2}); ``personal_epochs`` defaults to ``federated.local_epochs``.

Personal: v_k, a full model (``client_state`` keys ``personal.*``, parameters and buffers),
initialised to the round-0 global model w^0. Personalised predictions use v_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fedlt.configtools import require
from strategies.federated import register
from strategies.federated._common import optimise, run_epochs, squared_distance
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
class DittoOptions:
    """``lam``: λ of the proximal term. ``personal_epochs``: epochs on v_k per round
    (``null`` = ``federated.local_epochs``)."""

    lam: float = 0.1
    personal_epochs: int | None = None

    def validate(self, prefix: str) -> None:
        require(self.lam >= 0, f"{prefix}.lam", f"must be >= 0, got {self.lam}")
        require(
            self.personal_epochs is None or self.personal_epochs >= 0,
            f"{prefix}.personal_epochs",
            f"must be >= 0 or null, got {self.personal_epochs}",
        )


def proximal_term(model: nn.Module, anchors: list[Tensor], lam: float) -> Tensor:
    """``(λ/2)·Σ‖v − w‖²`` over the model's parameters and their anchors."""
    return 0.5 * lam * squared_distance(model.parameters(), anchors)


@register("ditto")
class Ditto(FederatedStrategy):
    Options = DittoOptions
    generic_modes = ("global",)
    personal_modes = ("personal",)

    def init_client_state(self, client_id: int) -> StateDict:
        return {"personal." + k: v for k, v in self.init_global_state().items()}

    def _load_personal(self, client_state: StateDict) -> None:
        state = sub_state(client_state, "personal.") if client_state else self.init_global_state()
        self.model.load_state_dict(state, strict=True)

    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        model, lam = self.model, self.options.lam
        self.load_global(global_state)
        anchors = [p.detach().clone() for p in model.parameters()]
        # Personal model v_k with the proximal pull towards w^t.
        self._load_personal(client_state)
        model.train()
        opt_personal = sgd(model.parameters(), train)
        epochs = self.options.personal_epochs
        personal_loss, _ = run_epochs(
            train.local_epochs if epochs is None else epochs,
            data,
            train.batch_size,
            generator,
            lambda x, y: optimise(
                opt_personal, F.cross_entropy(model(x), y) + proximal_term(model, anchors, lam)
            ),
        )
        personal = cpu_state(model, "personal.")
        # Global model: plain FedAvg local training from w^t.
        self.load_global(global_state)
        model.train()
        opt_global = sgd(model.parameters(), train)
        global_loss, _ = run_epochs(
            train.local_epochs,
            data,
            train.batch_size,
            generator,
            lambda x, y: optimise(opt_global, F.cross_entropy(model(x), y)),
        )
        return LocalResult(
            update=cpu_state(model),
            num_examples=len(data),
            client_state=personal,
            metrics={"train_loss": global_loss, "personal_loss": personal_loss},
        )

    def personal_predictor(
        self,
        global_state: StateDict,
        client_state: StateDict,
        train_data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> Predictor:
        self._load_personal(client_state)
        self.model.eval()
        model = self.model

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            return {"personal": model(x)}

        return predict
