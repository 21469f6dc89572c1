"""The federated strategy plug-in interface (no Flower, no Ray).

A strategy is the learning rule of one method. The federated engine calls it like this,
for every round r and every sampled client k (in partition-id order)::

    global_state = strategy.init_global_state()                    # once, round 0
    client_state = store.get(k) or strategy.init_client_state(k)   # persists across rounds
    result = strategy.local_update(global_state, client_state, data_k, train, gen)
    store.put(k, result.client_state)                              # never aggregated
    agg = strategy.start_aggregation(global_state)                 # once per round
    agg.add(result)                                                # in partition-id order
    global_state = agg.result()

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
from fedlt.seeding import seeded_torch

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
    ``exposed``: boolean mask over the classes a client has seen so far (online streams,
    docs/federated_continual.md), None for a fixed data set; strategies that train on
    streams (``online_streams``) pass their training logits through :meth:`masked`.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None
    exposed: Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def masked(self, logits: Tensor) -> Tensor:
        """``logits`` with the classes not yet exposed at −inf (Si-Blurry's exposure mask;
        unchanged when ``exposed`` is None)."""
        if self.exposed is None:
            return logits
        return logits.masked_fill(~self.exposed.to(logits.device), float("-inf"))

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
    return {
        prefix + k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        for k, v in state.items()
    }


def sub_state(state: StateDict, prefix: str) -> StateDict:
    """The entries of ``state`` under ``prefix`` with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


WEIGHT_KEY, COUNT_KEY = "__fedlt.weight__", "__fedlt.count__"


class WeightedMean:
    """Running example-weighted mean of state dicts, folded one update at a time.

    ``add`` accumulates ``Σ_k w_k·state_k`` in float64, in the order updates are added;
    ``result`` divides by ``Σ_k w_k`` and casts back to each entry's dtype. Integer buffers
    (BatchNorm's ``num_batches_tracked``) take the first update's value.

    A *partial* (:meth:`to_partial`) is the accumulator itself (float64 sums, the weight and
    count), so a block of clients can be summed where it was trained and merged on the
    server (:meth:`merge_partial`): ``((0 + B_1) + B_2) + …`` with
    ``B_b = (0 + w_i·x_i) + w_j·x_j + …`` over the clients of block b in partition-id order.
    The blocks are fixed by the round's sampled clients (``split_blocks`` in
    ``fedlt.federated.cohorts``), never by the workers, so the result is the same whatever
    the pool size or cohort split.
    """

    def __init__(self) -> None:
        self._acc: StateDict = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self.total = 0.0
        self.count = 0

    def _start(self, state: StateDict, dtypes: dict[str, torch.dtype] | None = None) -> None:
        for key, value in state.items():
            self._dtypes[key] = (dtypes or {}).get(key, value.dtype)
            self._acc[key] = (
                torch.zeros_like(value, dtype=torch.float64, memory_format=torch.contiguous_format)
                if value.is_floating_point()
                else value.clone()
            )

    def add(self, state: StateDict, weight: float) -> None:
        if not self.count:
            self._start(state)
        for key, value in state.items():
            if value.is_floating_point():
                self._acc[key] += value.to(torch.float64) * float(weight)
        self.total += float(weight)
        self.count += 1

    def to_partial(self) -> StateDict:
        """The accumulator as a state dict (float64 sums, first integer values, weight,
        count); original dtypes are restored by :meth:`result` of the merging side from the
        dtypes recorded in ``dtypes``."""
        partial = {key: acc for key, acc in self._acc.items()}
        partial[WEIGHT_KEY] = torch.tensor(self.total, dtype=torch.float64)
        partial[COUNT_KEY] = torch.tensor(self.count, dtype=torch.int64)
        return partial

    def merge_partial(self, partial: StateDict, dtypes: dict[str, torch.dtype]) -> None:
        """Add a partial sum (of clients that come after everything added so far)."""
        sums = {k: v for k, v in partial.items() if k not in (WEIGHT_KEY, COUNT_KEY)}
        if not self.count:
            self._start(sums, dtypes)
            for key, value in sums.items():
                if not value.is_floating_point():
                    self._acc[key] = value.clone()
        for key, value in sums.items():
            if value.is_floating_point():
                self._acc[key] += value
        self.total += float(partial[WEIGHT_KEY])
        self.count += int(partial[COUNT_KEY])

    @property
    def dtypes(self) -> dict[str, torch.dtype]:
        return dict(self._dtypes)

    def result(self) -> StateDict:
        if not self.count:
            raise ValueError("nothing to aggregate")
        if self.total <= 0:
            raise ValueError("aggregation weights sum to zero")
        return {
            key: (acc / self.total).to(self._dtypes[key])
            if acc.is_floating_point()
            else acc.clone()
            for key, acc in self._acc.items()
        }


def weighted_average(states: Sequence[StateDict], weights: Sequence[float]) -> StateDict:
    """Σ_k w_k·state_k / Σ_k w_k for floating tensors (see :class:`WeightedMean`)."""
    mean = WeightedMean()
    for state, w in zip(states, weights, strict=True):
        mean.add(state, w)
    return mean.result()


class Aggregation:
    """One round's aggregation: FedAvg's example-weighted mean of the updates (weights =
    local training-set sizes), merged over the previous global state (entries a method does
    not send keep their value).

    The engine feeds it in partition-id order, either client by client (:meth:`add`) or as
    partial sums of consecutive blocks of clients computed on the workers (:meth:`partial`
    of a block's own Aggregation, then :meth:`merge` here). A strategy whose aggregation is
    not a running sum overrides :meth:`partial` / :meth:`merge` (e.g. to carry the update
    itself) and sets ``mergeable = False``: its blocks then hold one client each.
    """

    mergeable: ClassVar[bool] = True

    def __init__(self, global_state: StateDict, server_state: StateDict | None = None) -> None:
        self.global_state = global_state
        self.server_state: StateDict = dict(server_state or {})
        self.mean = WeightedMean()

    @property
    def count(self) -> int:
        return self.mean.count

    def weight(self, result: LocalResult) -> float:
        """A client's aggregation weight: its number of training examples."""
        return float(result.num_examples)

    def add(self, result: LocalResult) -> None:
        self.mean.add(result.update, self.weight(result))

    def partial(self) -> StateDict:
        return self.mean.to_partial()

    def merge(self, partial: StateDict) -> None:
        dtypes = {k: self.global_state[k].dtype for k in partial if k in self.global_state}
        self.mean.merge_partial(partial, dtypes)

    def result(self) -> StateDict:
        return {**self.global_state, **self.mean.result()}


def sgd(params: Any, train: TrainConfig) -> torch.optim.SGD:
    """A fresh SGD optimizer (created anew each round, as in the FedLoGe code)."""
    return torch.optim.SGD(
        params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )


class FederatedStrategy:
    """Base class; the default behaviour is FedAvg (McMahan et al., AISTATS 2017).

    Subclasses set ``name``, an ``Options`` dataclass of hyperparameters (checked at config
    time), and override what differs. ``generic_modes`` / ``personal_modes`` name the logits
    the predictors return; the first of each is the headline number. A strategy that draws
    from the official FedLoGe numpy stream (``data.rng: fedloge-official``) sets
    ``uses_official_stream`` and takes an ``official_stream`` keyword argument (the legacy
    generator where the data draws left it, or None); the runtime passes it.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    uses_official_stream: ClassVar[bool] = False
    online_streams: ClassVar[bool] = False
    """Whether ``local_update`` masks its training logits with :meth:`ClientData.masked`, so
    the strategy can train on online streams (``engine: federated_continual``)."""
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
        self.model = self.working_model()

    # -- construction ---------------------------------------------------------------
    def working_model(self) -> nn.Module:
        """The module this process trains and evaluates in place, for every client (a
        fresh model on the device; the federated continual learners put their learner
        here, strategies.federated_continual.learner)."""
        return self._fresh_model(self.seed).to(self.device)

    def _fresh_model(self, seed: int) -> nn.Module:
        """A model initialised from the ``model_init`` stream of ``seed``
        (:func:`fedlt.seeding.seeded_torch`) without touching the global RNG."""
        with seeded_torch(seed, "model_init"):
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
                logits = data.masked(self.model(x))
                loss = nn.functional.cross_entropy(logits, y) + self.regulariser()
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

    def init_server_state(self) -> StateDict:
        """State that lives on the server only (e.g. a server optimizer's moments): updated by
        :meth:`Aggregation.result`, checkpointed and resumed, never sent to clients."""
        return {}

    def start_aggregation(
        self, global_state: StateDict, server_state: StateDict | None = None
    ) -> Aggregation:
        """A round's aggregation (see :class:`Aggregation`); after ``result`` its
        ``server_state`` is the new server state. Override to aggregate differently."""
        return Aggregation(global_state, server_state)

    def aggregate(self, global_state: StateDict, results: Sequence[LocalResult]) -> StateDict:
        """All of a round's results at once (``results`` in partition-id order)."""
        aggregation = self.start_aggregation(global_state)
        for result in results:
            aggregation.add(result)
        return aggregation.result()

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
