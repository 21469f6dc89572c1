"""Per-process federated runtime: data, model and strategy built once, reused by every call.

Both the Flower ClientApp and the in-process engine call :func:`client_train`; the server
calls :meth:`FederatedRuntime.evaluate`. Nothing here imports Flower or Ray, so the same code
runs on a GPU machine without them (and the in-process and Flower paths give identical
numbers: same function, same inputs, same generators).

Caching: a process keeps the runtime of the most recent config, keyed by the sha256 of the
config's canonical text (:func:`config_text`), so a Ray worker that serves many clients
decodes the data and builds the model once (docs/federated.md). The driver builds its
runtime from the config object (:func:`runtime_for`, no parsing); a worker, which receives
the text in a Flower message or a Ray task, builds it from the text (:func:`get_runtime`).
Both use the same key, so a driver that also runs clients in process reuses its runtime.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedlt.config import ExperimentConfig, load_yaml_text, resolve
from fedlt.data.federated import FederatedData, build_federated_data
from fedlt.data.transforms import random_crop_flip
from fedlt.devices import configure_torch, resolve_device
from fedlt.evaluation.federated import class_hits
from fedlt.models import build_model
from fedlt.seeding import torch_generator
from strategies.federated import FEDERATED_STRATEGIES, parse_options
from strategies.federated.base import (
    ClientData,
    FederatedStrategy,
    LocalResult,
    StateDict,
    TrainConfig,
)


class InjectedClientFailure(RuntimeError):
    """Raised on purpose by ``federated.fail_clients`` (fault-injection for tests)."""


@dataclass
class _Tensors:
    train_u8: Tensor
    train_y: Tensor
    test_u8: Tensor
    test_y: Tensor
    mean: Tensor
    std: Tensor


class FederatedRuntime:
    """Everything a process needs to train or evaluate clients of one experiment."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        configure_torch(cfg.resources.num_threads, cfg.resources.flush_denormal)
        self.device = resolve_device(cfg.resources.device)
        self.data: FederatedData = build_federated_data(cfg.data, cfg.seed)
        d = self.data
        mean = torch.tensor(d.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(d.std, dtype=torch.float32).view(1, -1, 1, 1)
        to_u8 = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # noqa: E731
        self.t = _Tensors(
            train_u8=to_u8(d.train.images).contiguous().to(self.device),
            train_y=torch.from_numpy(d.train.labels.astype(np.int64)).to(self.device),
            test_u8=to_u8(d.test.images).contiguous().to(self.device),
            test_y=torch.from_numpy(d.test.labels.astype(np.int64)).to(self.device),
            mean=mean.to(self.device),
            std=std.to(self.device),
        )
        strategy_cls = self.strategy_class()
        options = cfg.strategy.typed_options
        if options is None:  # options changed after the config was resolved
            options = parse_options(strategy_cls, cfg.strategy.options)
        num_classes, image_shape = d.num_classes, d.image_shape
        model_cfg = cfg.model

        with torch.random.fork_rng(devices=[]):  # a probe model must not move the global RNG
            probe = build_model(model_cfg.name, num_classes, image_shape, model_cfg.options)
        self.channels_last = cfg.resources.channels_last and _is_convolutional(probe)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format

        def model_factory() -> torch.nn.Module:
            model = build_model(model_cfg.name, num_classes, image_shape, model_cfg.options)
            return model.to(memory_format=memory_format)

        # data.rng: fedloge-official: strategies that draw from the official numpy stream
        # (FedLoGe's SSE-C) continue it where the data draws left it (docs/fedloge.md).
        stream = {"official_stream": d.official_stream} if strategy_cls.uses_official_stream else {}
        self.strategy: FederatedStrategy = strategy_cls(
            options, model_factory, num_classes, self.device, cfg.seed, **stream
        )
        f = cfg.federated
        self.train_config = TrainConfig(
            local_epochs=f.local_epochs,
            batch_size=f.batch_size,
            lr=f.lr,
            momentum=f.momentum,
            weight_decay=f.weight_decay,
        )
        self.failures = {(int(r), int(c)) for r, c in f.fail_clients}

    def strategy_class(self) -> type[FederatedStrategy]:
        """The strategy ``strategy.name`` names (engines built on this runtime override)."""
        return FEDERATED_STRATEGIES.get(self.cfg.strategy.name, "strategy.name")

    # -- data ---------------------------------------------------------------------
    def _normalise(self, u8: Tensor) -> Tensor:
        x = (u8.float().div_(255.0) - self.t.mean) / self.t.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def client_train_data(self, client_id: int) -> ClientData:
        idx = torch.from_numpy(self.data.client_indices[client_id].astype(np.int64)).to(self.device)
        augment = self._augment if self.cfg.federated.augment else None
        return ClientData(
            x=self._normalise(self.t.train_u8[idx]),
            y=self.t.train_y[idx],
            num_classes=self.data.num_classes,
            augment=augment,
        )

    def _augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Random crop (padding 4) and flip of a normalised batch; the padding is black
        (``-mean/std``, torchvision's pixel 0) or the mean colour (0), by
        ``federated.augment_fill``."""
        fill = -self.t.mean / self.t.std if self.cfg.federated.augment_fill == "black" else 0.0
        out = random_crop_flip(x, generator, padding=4, fill=fill)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def eligible_clients(self) -> list[int]:
        return [k for k, idx in enumerate(self.data.client_indices) if len(idx) > 0]

    # -- training -------------------------------------------------------------------
    def raise_injected_failure(self, round_: int, client_id: int) -> None:
        """Fail on purpose where ``federated.fail_clients`` says so (tests)."""
        if (round_, client_id) in self.failures:
            raise InjectedClientFailure(
                f"client {client_id} failed on purpose in round {round_} (federated.fail_clients)"
            )

    def train_client(
        self, client_id: int, round_: int, global_state: StateDict, client_state: StateDict | None
    ) -> LocalResult:
        self.raise_injected_failure(round_, client_id)
        if not client_state:
            client_state = self.strategy.init_client_state(client_id)
        data = self.client_train_data(client_id)
        generator = torch_generator(self.cfg.seed, "client_train", round_, client_id)
        return self.strategy.local_update(
            global_state, client_state, data, self.train_config, generator
        )

    # -- evaluation -----------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, predictor: Any, u8: Tensor) -> dict[str, Tensor]:
        out: dict[str, list[Tensor]] = {}
        bs = self.cfg.federated.eval_batch_size
        for start in range(0, u8.shape[0], bs):
            for mode, logits in predictor(self._normalise(u8[start : start + bs])).items():
                out.setdefault(mode, []).append(logits.float().cpu())
        return {m: torch.cat(v) for m, v in out.items()}

    def generic_logits(self, global_state: StateDict) -> dict[str, Tensor]:
        """Logits per generic mode on the balanced global test set."""
        predictor = self.strategy.generic_predictor(global_state)
        return self._logits(predictor, self.t.test_u8)

    def personal_logits(
        self, client_id: int, round_: int, global_state: StateDict, client_state: StateDict | None
    ) -> dict[str, Tensor]:
        """Logits per personal mode on client ``client_id``'s local test set."""
        if not client_state:
            client_state = self.strategy.init_client_state(client_id)
        generator = torch_generator(self.cfg.seed, "client_eval", round_, client_id)
        predictor = self.strategy.personal_predictor(
            global_state,
            client_state,
            self.client_train_data(client_id),
            self.train_config,
            generator,
        )
        idx = torch.from_numpy(self.data.client_test_indices[client_id].astype(np.int64))
        return self._logits(predictor, self.t.test_u8[idx.to(self.device)])

    def personal_hits(
        self, client_id: int, round_: int, global_state: StateDict, client_state: StateDict | None
    ) -> dict[str, np.ndarray]:
        """Per-class correct counts per personal mode on client ``client_id``'s local test
        set (absent classes masked when ``federated.mask_absent_classes``): all the server
        needs to compute every personalised metric exactly, in a few bytes per client."""
        logits = self.personal_logits(client_id, round_, global_state, client_state)
        labels = self.data.test.labels[self.data.client_test_indices[client_id]].astype(np.int64)
        return {
            mode: class_hits(
                z, labels, self.data.num_classes, self.cfg.federated.mask_absent_classes
            )
            for mode, z in logits.items()
        }

    def client_sizes(self) -> dict[int, int]:
        """Training-set size of every client (the work estimate for cohort assignment)."""
        return {k: len(idx) for k, idx in enumerate(self.data.client_indices)}

    def evaluated_clients(self) -> list[int]:
        """Clients with both training data and a local test set (personalised evaluation)."""
        d = self.data
        return [
            k
            for k, test_idx in enumerate(d.client_test_indices)
            if len(test_idx) > 0 and len(d.client_indices[k]) > 0
        ]


def _is_convolutional(model: torch.nn.Module) -> bool:
    """Models with 2-D convolutions run in channels-last memory format (NHWC), which CPU
    (oneDNN) and CUDA (cuDNN) convolution kernels prefer; the numbers differ from NCHW only
    by floating-point summation order."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def config_text(cfg: ExperimentConfig) -> str:
    """The canonical text of a resolved config (what clients receive)."""
    return cfg.to_yaml()


_lock = threading.Lock()
_cached: tuple[str, FederatedRuntime] | None = None


def config_key(text: str) -> str:
    """The cache key of a config text (its sha256)."""
    return hashlib.sha256(text.encode()).hexdigest()


def _cached_runtime(text: str, build: Callable[[], ExperimentConfig]) -> FederatedRuntime:
    """The cached runtime for ``text``, or a new one for ``build()`` (most recent kept)."""
    global _cached
    key = config_key(text)
    with _lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        runtime = _runtime_class(cfg := build())(cfg)
        _cached = (key, runtime)
        return runtime


def _runtime_class(cfg: ExperimentConfig) -> type[FederatedRuntime]:
    """The runtime of the config's engine: federated, or federated continual (whose clients
    replay their own streams, :mod:`fedlt.federated_continual.runtime`)."""
    if cfg.engine == "federated_continual":
        from fedlt.federated_continual.runtime import FederatedContinualRuntime

        return FederatedContinualRuntime
    return FederatedRuntime


def runtime_for(cfg: ExperimentConfig) -> FederatedRuntime:
    """The runtime of a resolved config object, built once per process (nothing parsed)."""
    return _cached_runtime(config_text(cfg), lambda: cfg)


def get_runtime(text: str) -> FederatedRuntime:
    """The runtime for a resolved-config text (what a worker receives), built once per
    process; the text is parsed only when this process has no runtime for it yet."""
    return _cached_runtime(text, lambda: resolve(load_yaml_text(text)))


def client_train(
    text: str, client_id: int, round_: int, global_state: StateDict, client_state: StateDict | None
) -> LocalResult:
    """One client's local update: the function both the ClientApp and the in-process engine call."""
    return get_runtime(text).train_client(client_id, round_, global_state, client_state)


@dataclass
class BlockResult:
    """A block of clients trained one after another where they run.

    ``clients``: each client's result *without* its update (size, metrics, new client state),
    or the error that stopped it; ``partial``: the block's partial aggregate of the successful
    clients' updates (:meth:`strategies.federated.base.Aggregation.partial`), None if none
    succeeded."""

    clients: dict[int, LocalResult | BaseException]
    partial: StateDict | None


def non_finite_entry(result: LocalResult) -> str | None:
    """Name of the first update or client-state entry holding NaN or inf, else None."""
    for kind, state in (("update", result.update), ("client state", result.client_state)):
        floats = [v.reshape(-1) for v in state.values() if v.is_floating_point()]
        if floats and bool(torch.isfinite(torch.cat(floats)).all()):
            continue  # one check for the whole state (the common case)
        for key, value in state.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                return f"{kind} entry {key!r}"
    return None


def train_block(
    source: str | FederatedRuntime,
    round_: int,
    block: list[int],
    global_state: StateDict,
    states: dict[int, StateDict | None],
) -> BlockResult:
    """Train a block of clients in id order and sum their updates into the block's partial
    aggregate. A client that raises, or whose update or state holds NaN/inf, is reported as
    failed and left out of the sum; the others go on. The function both the ClientApp and
    the in-process executor call, so both give the same numbers. ``source``: the config
    text (from a message or task) or this process's runtime."""
    runtime = source if isinstance(source, FederatedRuntime) else get_runtime(source)
    aggregation = runtime.strategy.start_aggregation(global_state)
    clients: dict[int, LocalResult | BaseException] = {}
    for k in block:
        try:
            result = runtime.train_client(k, round_, global_state, states.get(k))
        except Exception as exc:  # a failing client must not stop the block
            clients[k] = exc
            continue
        bad = non_finite_entry(result)
        if bad is not None:
            clients[k] = FloatingPointError(
                f"non-finite values (NaN or inf) in {bad}; the update is discarded "
                "(lower federated.lr if this repeats)"
            )
            continue
        aggregation.add(result)
        # A block of one keeps its update: a node can send it (float32) instead of the float64
        # partial, which the server rebuilds exactly (``0 + w·x`` is ``w·x``).
        update = result.update if len(block) == 1 else {}
        clients[k] = LocalResult(update, result.num_examples, result.client_state, result.metrics)
    return BlockResult(clients, aggregation.partial() if aggregation.count else None)


def client_evaluate(
    source: str | FederatedRuntime,
    client_id: int,
    round_: int,
    global_state: StateDict,
    client_state: StateDict | None,
) -> dict[str, np.ndarray]:
    """One client's personalised evaluation (per-class hits per mode), wherever it runs;
    ``source`` as for :func:`train_block`."""
    runtime = source if isinstance(source, FederatedRuntime) else get_runtime(source)
    return runtime.personal_hits(client_id, round_, global_state, client_state)
