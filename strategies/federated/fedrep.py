"""FedRep (Collins et al., "Exploiting Shared Representations for Personalized Federated
Learning", ICML 2021).

Each round client k first trains its personal head h_k with the body φ frozen, then the body
with the head frozen (paper Algorithm 1):

    h_k ← GRD(f_k(h_k, φ^t), h_k, η)   for τ_h = ``head_epochs`` epochs      (paper Eq. 3)
    φ_k ← GRD(f_k(h_k, φ^t), φ^t, η)   for τ_φ = ``federated.local_epochs`` epochs
    φ^{t+1} = Σ_k n_k φ_k / Σ_k n_k                                            (server)

Only the body (``backbone.*``, BatchNorm buffers included) is averaged. FedRep's experiments
use 10 head epochs against 1 body epoch ("many more local updates for the head"), hence the
default ``head_epochs: 10``.

Personal: the head h_k (``client_state`` keys ``head.*``); it starts from the global model's
seeded initial head on every client. FedRep defines no generic model. For the generic
(balanced-test) number, ``generic_head: average`` also sends a copy of the trained head,
which the server averages into the global ``head.*`` — this is what FedRep's reference code
does (it averages every key and uses the local heads only for local evaluation); clients
never load that average. ``generic_head: initial`` sends the body only (the head never
leaves the client) and the generic mode then uses the untrained initial head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from fedlt.configtools import require
from strategies.federated import register
from strategies.federated._common import freeze, optimise, run_epochs
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
class FedRepOptions:
    """``head_epochs``: τ_h, epochs of head training per round (body epochs are
    ``federated.local_epochs``). ``generic_head``: see the module docstring."""

    head_epochs: int = 10
    generic_head: Literal["average", "initial"] = "average"

    def validate(self, prefix: str) -> None:
        require(
            self.head_epochs >= 0, f"{prefix}.head_epochs", f"must be >= 0, got {self.head_epochs}"
        )


@register("fedrep")
class FedRep(FederatedStrategy):
    Options = FedRepOptions
    generic_modes = ("global",)
    personal_modes = ("personal",)

    def init_client_state(self, client_id: int) -> StateDict:
        return cpu_state(self._fresh_model(self.seed).head, "head.")

    def _load(self, global_state: StateDict, client_state: StateDict) -> None:
        self.model.backbone.load_state_dict(sub_state(global_state, "backbone."), strict=True)
        head = client_state if client_state else self.init_client_state(-1)
        self.model.head.load_state_dict(sub_state(head, "head."), strict=True)

    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        self._load(global_state, client_state)
        self.model.train()
        model = self.model

        def loss_of(x: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(model(x), y)

        # Head epochs: body frozen (its BatchNorm statistics still update in train mode, as in
        # FedRep's code).
        freeze(model.backbone)
        opt_head = sgd(model.head.parameters(), train)
        head_loss, _ = run_epochs(
            self.options.head_epochs,
            data,
            train.batch_size,
            generator,
            lambda x, y: optimise(opt_head, loss_of(x, y)),
        )
        freeze(model.backbone, False)
        # Body epochs: head frozen.
        freeze(model.head)
        opt_body = sgd(model.backbone.parameters(), train)
        body_loss, _ = run_epochs(
            train.local_epochs,
            data,
            train.batch_size,
            generator,
            lambda x, y: optimise(opt_body, loss_of(x, y)),
        )
        freeze(model.head, False)
        update = cpu_state(model.backbone, "backbone.")
        if self.options.generic_head == "average":
            update.update(cpu_state(model.head, "head."))
        return LocalResult(
            update=update,
            num_examples=len(data),
            client_state=cpu_state(model.head, "head."),
            metrics={"train_loss": body_loss, "head_loss": head_loss},
        )

    def personal_predictor(
        self,
        global_state: StateDict,
        client_state: StateDict,
        train_data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> Predictor:
        self._load(global_state, client_state)
        self.model.eval()
        model = self.model

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            return {"personal": model(x)}

        return predict
