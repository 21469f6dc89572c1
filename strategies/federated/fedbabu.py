"""FedBABU (Oh, Kim & Yun, "FedBABU: Toward Enhanced Representation for Federated Image
Classification", ICLR 2022).

Training (paper Algorithm 1): the head stays at its random initialisation, identical on all
clients (drawn from the run seed), and is never updated; clients train only the body with
SGD and the server averages the body (BatchNorm buffers included):

    θ_body^{t+1} = Σ_k n_k θ_body,k / Σ_k n_k,     θ_head^t = θ_head^0 for all t.

Evaluation: the generic model is body + frozen initial head. Personalisation fine-tunes the
whole model (body and head, the paper's default) on the client's training data for τ_f =
``finetune_epochs`` epochs (the paper reports τ_f ∈ {1, 2, 5, 10}; 5 here) with the local
SGD hyperparameters, inside :meth:`personal_predictor` on the worker's model — the global
state is never mutated and the next call reloads it. ``finetune: head`` fine-tunes only the
head. Personal: nothing persists (the fine-tuned model exists only during evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from fedlt.configtools import require
from strategies.federated import register
from strategies.federated._common import optimise, run_epochs
from strategies.federated.base import (
    ClientData,
    FederatedStrategy,
    LocalResult,
    Predictor,
    StateDict,
    TrainConfig,
    cpu_state,
    sgd,
)


@dataclass
class FedBABUOptions:
    """``finetune_epochs``: τ_f at evaluation. ``finetune``: ``full`` (body + head) or ``head``."""

    finetune_epochs: int = 5
    finetune: Literal["full", "head"] = "full"

    def validate(self, prefix: str) -> None:
        require(
            self.finetune_epochs >= 0,
            f"{prefix}.finetune_epochs",
            f"must be >= 0, got {self.finetune_epochs}",
        )


@register("fedbabu")
class FedBABU(FederatedStrategy):
    Options = FedBABUOptions
    generic_modes = ("global",)
    personal_modes = ("finetuned",)

    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        self.load_global(global_state)
        self.model.train()
        model = self.model
        optimizer = sgd(model.backbone.parameters(), train)  # the head is never stepped
        loss, _ = run_epochs(
            train.local_epochs,
            data,
            train.batch_size,
            generator,
            lambda x, y: optimise(optimizer, F.cross_entropy(model(x), y)),
        )
        return LocalResult(
            update=cpu_state(model.backbone, "backbone."),
            num_examples=len(data),
            client_state=client_state,
            metrics={"train_loss": loss},
        )

    def personal_predictor(
        self,
        global_state: StateDict,
        client_state: StateDict,
        train_data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> Predictor:
        self.load_global(global_state)  # copies: global_state itself is left untouched
        model = self.model
        params = model.parameters() if self.options.finetune == "full" else model.head.parameters()
        if self.options.finetune_epochs > 0 and len(train_data) > 0:
            model.train()
            optimizer = sgd(params, train)
            with torch.enable_grad():
                run_epochs(
                    self.options.finetune_epochs,
                    train_data,
                    train.batch_size,
                    generator,
                    lambda x, y: optimise(optimizer, F.cross_entropy(model(x), y)),
                )
        model.eval()

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            return {"finetuned": model(x)}

        return predict
