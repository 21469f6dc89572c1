"""The federated strategy plug-in interface (no Flower, no Ray).

A strategy is the learning rule of one method. The federated engine calls it like this,
for every round r and every sampled client k (in partition-id order)::

    global_state = strategy.init_global_state()                    # once, round 0
    client_state = store.get(k) or strategy.init_client_state(k)   # persists across rounds
    result = strategy.local_update(global_state, client_state, data_k, train, gen)
    store.put(k, result.client_state)                              # never aggregated
    global_state = strategy.aggregate(global_state, results)       # results in id order

and evaluates with :meth:`generic_predictor` (balanced test set) and
:meth:`personal_predictor` (each client's local test set). States are ``dict[str, Tensor]``
on the CPU so they can travel as Flower ``ArrayRecord``s and be checkpointed as they are.
One strategy object lives per worker process and reuses ``self.model`` for every call
(weights are loaded in place; no model object per client).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fedlt.configtools import from_dict

StateDict = dict[str, Tensor]
Predictor = Callable[[Tensor], dict[str, Tensor]]
"""Maps a batch of inputs (on the strategy's device) to logits per inference mode."""


@dataclass
class NoOptions:
    """Strategies without hyperparameters of their own."""


@dataclass
class TrainConfig:
    """Local training hyperparameters common to all methods (from ``federated:``)."""

    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.03
    momentum: float = 0.5
    weight_decay: float = 0.0


@dataclass
class ClientData:
    """One client's training (or test) data, already on the strategy's device.

    ``x``: float inputs (n, C, H, W), normalised. ``y``: int64 labels (n,).
    ``augment``: optional batch transform ``(x, generator) -> x`` applied to training batches.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(
        self, batch_size: int, generator: torch.Generator, shuffle: bool = True
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of (augmented) mini-batches in a generator-determined order."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.y.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x = self.x[idx]
            if self.augment is not None:
                x = self.augment(x, generator)
            yield x, self.y[idx]

    def class_counts(self) -> Tensor:
        return torch.bincount(self.y.cpu(), minlength=self.num_classes)


@dataclass
class LocalResult:
    """What a client's local update produces.

    ``update``: tensors sent to the server and aggregated. ``client_state``: persisted for this
    client only (personal heads, personal models); never aggregated, never leaves the client
    state store. ``num_examples``: aggregation weight. ``metrics``: scalars for the log.
    """

    update: StateDict
    num_examples: int
    client_state: StateDict = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def cpu_state(module_or_state: nn.Module | StateDict, prefix: str = "") -> StateDict:
    """Detached CPU copy of a module's state dict (or of a state dict), keys prefixed."""
    state = (
        module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    )
    return {prefix + k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def sub_state(state: StateDict, prefix: str) -> StateDict:
    """The entries of ``state`` under ``prefix`` with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def weighted_average(states: Sequence[StateDict], weights: Sequence[float]) -> StateDict:
    """Σ_k w_k·state_k / Σ_k w_k for floating tensors; integer buffers (BatchNorm's
    ``num_batches_tracked``) take the first state's value. Deterministic: summed in order."""
    if not states:
        raise ValueError("nothing to aggregate")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("aggregation weights sum to zero")
    out: StateDict = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64)
            for state, w in zip(states, weights, strict=True):
                acc += state[key].to(torch.float64) * (w / total)
            out[key] = acc.to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def sgd(params: Any, train: TrainConfig) -> torch.optim.SGD:
    """A fresh SGD optimizer (created anew each round, as in the FedLoGe code)."""
    return torch.optim.SGD(
        params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )


class FederatedStrategy:
    """Base class; the default behaviour is FedAvg (McMahan et al., AISTATS 2017).

    Subclasses set ``name``, an ``Options`` dataclass of hyperparameters (checked at config
    time), and override what differs. ``generic_modes`` / ``personal_modes`` name the logits
    the predictors return; the first of each is the headline number.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    generic_modes: ClassVar[tuple[str, ...]] = ("global",)
    personal_modes: ClassVar[tuple[str, ...]] = ("global",)

    def __init__(
        self,
        options: Any,
        model_factory: Callable[[], nn.Module],
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        self.options = options
        self.model_factory = model_factory
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.seed = seed
        self.model = self._fresh_model(seed).to(self.device)

    # -- construction ---------------------------------------------------------------
    def _fresh_model(self, seed: int) -> nn.Module:
        """A model initialised from ``seed`` without touching the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.model_factory()

    def init_global_state(self) -> StateDict:
        """The round-0 global state (a function of the seed only)."""
        return cpu_state(self._fresh_model(self.seed))

    def init_client_state(self, client_id: int) -> StateDict:
        """A client's state before its first participation (empty for global-only methods)."""
        return {}

    # -- training -----------------------------------------------------------------
    def load_global(self, global_state: StateDict) -> None:
        """Load the global weights into the working model in place."""
        self.model.load_state_dict(global_state, strict=True)

    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        """FedAvg: ``local_epochs`` of SGD on the client's data from the global weights."""
        self.load_global(global_state)
        self.model.train()
        optimizer = sgd(self.model.parameters(), train)
        loss_sum, steps = 0.0, 0
        for _ in range(train.local_epochs):
            for x, y in data.batches(train.batch_size, generator):
                loss = nn.functional.cross_entropy(self.model(x), y) + self.regulariser()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach())
                steps += 1
        return LocalResult(
            update=cpu_state(self.model),
            num_examples=len(data),
            client_state=client_state,
            metrics={"train_loss": loss_sum / max(steps, 1)},
        )

    def regulariser(self) -> Tensor | float:
        """Extra loss term added to each local step (FedProx overrides)."""
        return 0.0

    def aggregate(self, global_state: StateDict, results: Sequence[LocalResult]) -> StateDict:
        """Example-weighted average of the updates (weights = local training-set sizes)."""
        merged = weighted_average([r.update for r in results], [r.num_examples for r in results])
        return {**global_state, **merged}

    # -- evaluation ---------------------------------------------------------------
    def generic_predictor(self, global_state: StateDict) -> Predictor:
        """Logits of the global model (for the balanced test set)."""
        self.load_global(global_state)
        self.model.eval()
        model = self.model

        def predict(x: Tensor) -> dict[str, Tensor]:
            return {"global": model(x)}

        return predict

    def personal_predictor(
        self,
        global_state: StateDict,
        client_state: StateDict,
        train_data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> Predictor:
        """Logits of client k's personalised model; global-only methods use the global model."""
        return self.generic_predictor(global_state)


def parse_options(
    strategy_cls: type, options: dict[str, Any] | Any, prefix: str = "strategy.options"
) -> Any:
    """Turn a ``strategy.options`` mapping into the strategy's ``Options`` dataclass."""
    options_cls = getattr(strategy_cls, "Options", NoOptions)
    if dataclasses.is_dataclass(options) and not isinstance(options, dict):
        return options
    return from_dict(options_cls, options or {}, prefix)
