"""A tiny federated world for strategy tests: a 2-layer MLP FeatureModel (with BatchNorm, so
buffers are aggregated too) on linearly separable 1×4×4 "images", a few clients, and a
minimal engine loop that calls strategies exactly as the federated engine does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from fedlt.models.base import FeatureModel
from strategies.federated import FEDERATED_STRATEGIES, parse_options
from strategies.federated.base import ClientData, FederatedStrategy, TrainConfig

NUM_CLASSES = 4
FEATURE_DIM = 16
IMAGE_SHAPE = (1, 4, 4)


def tiny_model() -> FeatureModel:
    backbone = nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, FEATURE_DIM),
        nn.BatchNorm1d(FEATURE_DIM),
        nn.ReLU(),
    )
    return FeatureModel(backbone, FEATURE_DIM, NUM_CLASSES)


def separable_data(n: int, seed: int, class_probs: list[float] | None = None) -> ClientData:
    """Class c = a fixed random ±1 pattern (shared by all calls) plus N(0, 0.5²) noise."""
    means = torch.sign(torch.randn(NUM_CLASSES, 16, generator=torch.Generator().manual_seed(99)))
    g = torch.Generator().manual_seed(seed)
    probs = torch.tensor(class_probs or [1.0] * NUM_CLASSES)
    y = torch.multinomial(probs, n, replacement=True, generator=g)
    x = means[y] + 0.5 * torch.randn(n, 16, generator=g)
    return ClientData(x.view(n, *IMAGE_SHAPE), y, NUM_CLASSES)


@dataclass
class World:
    """Clients' train/test data and helpers to drive a strategy like the engine does."""

    clients: list[ClientData]
    local_tests: list[ClientData]
    test: ClientData
    train: TrainConfig

    def make(
        self, name: str, options: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu"
    ):
        cls = FEDERATED_STRATEGIES.get(name)
        return cls(parse_options(cls, options or {}), tiny_model, NUM_CLASSES, device, seed)

    def to(self, device: str) -> World:
        """The same world with every tensor on ``device``."""

        def move(d: ClientData) -> ClientData:
            return ClientData(d.x.to(device), d.y.to(device), d.num_classes, d.augment)

        return World(
            [move(c) for c in self.clients],
            [move(c) for c in self.local_tests],
            move(self.test),
            self.train,
        )

    def run(self, strategy: FederatedStrategy, rounds: int, seed: int = 0):
        """Rounds of local_update (partition-id order) + aggregate; returns
        (global_state, client_states, per-round mean train loss)."""
        global_state = strategy.init_global_state()
        states: dict[int, dict] = {}
        losses = []
        for r in range(rounds):
            results = []
            for k, data in enumerate(self.clients):
                gen = torch.Generator().manual_seed(seed * 100_003 + r * 1_000 + k)
                state = states.get(k) or strategy.init_client_state(k)
                result = strategy.local_update(global_state, state, data, self.train, gen)
                states[k] = result.client_state
                results.append(result)
            global_state = strategy.aggregate(global_state, results)
            losses.append(sum(r.metrics["train_loss"] for r in results) / len(results))
        return global_state, states, losses

    @staticmethod
    def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
        return float((logits.argmax(1) == y.to(logits.device)).float().mean())

    def generic_accuracy(self, strategy: FederatedStrategy, global_state) -> dict[str, float]:
        predict = strategy.generic_predictor(global_state)
        with torch.no_grad():
            out = predict(self.test.x)
        assert tuple(out) == strategy.generic_modes
        return {mode: self.accuracy(z, self.test.y) for mode, z in out.items()}

    def personal_accuracy(
        self, strategy: FederatedStrategy, global_state, states
    ) -> dict[str, float]:
        totals: dict[str, float] = {}
        for k, test in enumerate(self.local_tests):
            gen = torch.Generator().manual_seed(7_000 + k)
            predict = strategy.personal_predictor(
                global_state, states.get(k, {}), self.clients[k], self.train, gen
            )
            with torch.no_grad():
                out = predict(test.x)
            assert tuple(out) == strategy.personal_modes
            for mode, z in out.items():
                totals[mode] = totals.get(mode, 0.0) + self.accuracy(z, test.y) / len(
                    self.local_tests
                )
        return totals


SKEWS = [[0.7, 0.2, 0.05, 0.05], [0.05, 0.05, 0.2, 0.7], [0.25, 0.25, 0.25, 0.25]]


@pytest.fixture
def world() -> World:
    clients = [separable_data(96, seed=k, class_probs=p) for k, p in enumerate(SKEWS)]
    local_tests = [separable_data(64, seed=50 + k, class_probs=p) for k, p in enumerate(SKEWS)]
    train = TrainConfig(local_epochs=1, batch_size=16, lr=0.05, momentum=0.5, weight_decay=0.0)
    return World(clients, local_tests, separable_data(200, seed=1234), train)


@pytest.fixture(autouse=True, scope="session")
def _sse_cache_dir(tmp_path_factory):
    """Keep SSE-C disk caching away from the user's ~/.cache during tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FEDLT_CACHE_DIR", str(tmp_path_factory.mktemp("fedlt_cache")))
    yield
    mp.undo()
