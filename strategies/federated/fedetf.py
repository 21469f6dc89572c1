"""FedETF (Li, Shang, He, Lin & Wu, "No Fear of Classifier Biases: Neural Collapse Inspired
Federated Learning with Synthetic and Fixed Classifier", ICCV 2023).

Model (paper §4.1): body h = θ(x); a learnable projection layer u = P h (``Linear(d, p)``,
p = C by default as in the official ResNets); L2 normalisation û = u/‖u‖; a *fixed*
simplex-ETF classifier E ∈ R^{p×C} (unit columns, pairwise cosine −1/(C−1), drawn from the
seed, identical on all clients, never trained in FL); logits ``z = β·Eᵀû`` with a learnable
temperature β (initialised to ``temperature_init``; official ResNets: 1.0).

Local objective, the balanced feature loss (paper Eq. 6):

    L = −log( n_{k,y} exp(β e_yᵀû) / Σ_c n_{k,c} exp(β e_cᵀû) ) = CE(z + log π_k, y),

the balanced softmax of z under the client's class prior. The server averages body,
projection and temperature by training-set size (FedAvg).

Personalisation (paper §4.3, "local adaptation"; official code): from the global model,
``adapt_epochs`` epochs of the same local training, then ``personal_loops`` alternations of
(a) fine-tuning the ETF itself, now learnable (SGD lr ``proto_lr``, ``proto_epochs``
epochs, CE) and (b) fine-tuning the projection layer (SGD lr ``proj_lr`` with the local
momentum and weight decay, ``proj_epochs`` epochs, CE); body and temperature frozen.

Simplifications (honest list): during (a)/(b) the body is frozen, so features are computed
once in eval mode and without augmentation (the official code re-runs the body in train
mode each batch, letting BatchNorm statistics drift); the personalised model is rebuilt at
every evaluation rather than kept across rounds; FedETF's server-side global fine-tuning
schedule and learning-rate decay are not reproduced. Personal: nothing persists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fedlt.configtools import require
from fedlt.seeding import torch_generator
from strategies.federated import register
from strategies.federated._common import (
    balanced_softmax_loss,
    optimise,
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
from strategies.federated.sse_c import check_dimensions, simplex_etf


@dataclass
class FedETFOptions:
    """FedETF hyperparameters; defaults follow the official code."""

    proj_dim: int = 0
    temperature_init: float = 1.0
    loss: Literal["balanced_softmax", "ce"] = "balanced_softmax"
    adapt_epochs: int | None = None
    personal_loops: int = 20
    proto_epochs: int = 3
    proj_epochs: int = 3
    proto_lr: float = 0.1
    proj_lr: float = 0.05

    def validate(self, prefix: str) -> None:
        require(self.proj_dim >= 0, f"{prefix}.proj_dim", "must be >= 0 (0 = num_classes)")
        require(self.temperature_init > 0, f"{prefix}.temperature_init", "must be > 0")
        for name in ("personal_loops", "proto_epochs", "proj_epochs"):
            require(getattr(self, name) >= 0, f"{prefix}.{name}", "must be >= 0")
        require(
            self.adapt_epochs is None or self.adapt_epochs >= 0,
            f"{prefix}.adapt_epochs",
            "must be >= 0 or null (= federated.local_epochs)",
        )
        require(self.proto_lr > 0, f"{prefix}.proto_lr", "must be > 0")
        require(self.proj_lr > 0, f"{prefix}.proj_lr", "must be > 0")


def etf_logits(u: Tensor, etf: Tensor, temperature: Tensor) -> Tensor:
    """``β·Eᵀ(u/‖u‖)`` for projected features u (n×p) and E (p×C)."""
    return temperature * (F.normalize(u, dim=1) @ etf)


@register("fedetf")
class FedETF(FederatedStrategy):
    Options = FedETFOptions
    generic_modes = ("global",)
    personal_modes = ("finetuned",)

    def __init__(self, options, model_factory, num_classes, device="cpu", seed=0) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        self.proj_dim = options.proj_dim or num_classes
        check_dimensions(self.proj_dim, num_classes)
        generator = torch_generator(seed, "fedetf_etf")
        self.etf = simplex_etf(self.proj_dim, num_classes, generator).float().to(self.device)
        self.proj = self._initial_proj().to(self.device)
        self.temperature = nn.Parameter(
            torch.tensor(float(options.temperature_init), device=self.device)
        )

    def _initial_proj(self) -> nn.Linear:
        return seeded_linear(self.model.feature_dim, self.proj_dim, self.seed, "fedetf_proj")

    def init_global_state(self) -> StateDict:
        return {
            **cpu_state(self._fresh_model(self.seed).backbone, "backbone."),
            **cpu_state(self._initial_proj(), "proj."),
            "temperature": torch.tensor(float(self.options.temperature_init)),
        }

    def load_global(self, global_state: StateDict) -> None:
        self.model.backbone.load_state_dict(sub_state(global_state, "backbone."), strict=True)
        self.proj.load_state_dict(sub_state(global_state, "proj."), strict=True)
        with torch.no_grad():
            self.temperature.copy_(global_state["temperature"])

    def _global_update(self) -> StateDict:
        return {
            **cpu_state(self.model.backbone, "backbone."),
            **cpu_state(self.proj, "proj."),
            "temperature": self.temperature.detach().to("cpu", copy=True),
        }

    def logits(self, x: Tensor, etf: Tensor | None = None) -> Tensor:
        u = self.proj(self.model.features(x))
        return etf_logits(u, self.etf if etf is None else etf, self.temperature)

    def _train(self, data: ClientData, train: TrainConfig, epochs: int, generator) -> float:
        self.model.train()
        params = [*self.model.backbone.parameters(), *self.proj.parameters(), self.temperature]
        optimizer = sgd(params, train)
        counts = data.class_counts()

        def loss_of(x: Tensor, y: Tensor) -> Tensor:
            z = self.logits(x)
            if self.options.loss == "balanced_softmax":
                return balanced_softmax_loss(z, y, counts)
            return F.cross_entropy(z, y)

        loss, _ = run_epochs(
            epochs,
            data,
            train.batch_size,
            generator,
            lambda x, y: optimise(optimizer, loss_of(x, y)),
        )
        return loss

    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        self.load_global(global_state)
        loss = self._train(data, train, train.local_epochs, generator)
        return LocalResult(
            update=self._global_update(),
            num_examples=len(data),
            client_state=client_state,
            metrics={"train_loss": loss, "temperature": float(self.temperature.detach())},
        )

    def generic_predictor(self, global_state: StateDict) -> Predictor:
        self.load_global(global_state)
        self.model.eval()

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            return {"global": self.logits(x)}

        return predict

    @torch.no_grad()
    def _features(self, x: Tensor, chunk: int = 512) -> Tensor:
        self.model.eval()
        return torch.cat([self.model.features(x[i : i + chunk]) for i in range(0, len(x), chunk)])

    def personal_predictor(
        self,
        global_state: StateDict,
        client_state: StateDict,
        train_data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> Predictor:
        opts = self.options
        self.load_global(global_state)
        etf = self.etf.clone().requires_grad_(True)
        if len(train_data) > 0:
            with torch.enable_grad():
                adapt = train.local_epochs if opts.adapt_epochs is None else opts.adapt_epochs
                self._train(train_data, train, adapt, generator)
                self._finetune_heads(train_data, train, etf, generator)
        self.model.eval()
        personal_etf = etf.detach()

        @torch.no_grad()
        def predict(x: Tensor) -> dict[str, Tensor]:
            return {"finetuned": self.logits(x, personal_etf)}

        return predict

    def _finetune_heads(
        self, data: ClientData, train: TrainConfig, etf: Tensor, generator: torch.Generator
    ) -> None:
        """Alternate (a) ETF fine-tuning and (b) projection fine-tuning on frozen features."""
        opts = self.options
        features = ClientData(self._features(data.x), data.y, data.num_classes)
        temperature = self.temperature.detach()
        proj = self.proj

        def loss_of(h: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(etf_logits(proj(h), etf, temperature), y)

        def fit(optimizer: torch.optim.Optimizer, epochs: int) -> None:
            run_epochs(
                epochs,
                features,
                train.batch_size,
                generator,
                lambda h, y: optimise(optimizer, loss_of(h, y)),
            )

        proj_train = TrainConfig(
            lr=opts.proj_lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
        for _ in range(opts.personal_loops):
            fit(torch.optim.SGD([etf], lr=opts.proto_lr), opts.proto_epochs)
            fit(sgd(proj.parameters(), proj_train), opts.proj_epochs)
