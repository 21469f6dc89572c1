"""The federated continual runtime: the federated runtime whose clients learn from streams.

Everything of :class:`~fedlt.federated.runtime.FederatedRuntime` (data, model, strategy
built once per process, the same on the server and on every worker) plus every client's
stream (:class:`~fedlt.federated_continual.streams.ClientStreams`). Training a client runs
its strategy's ``local_update`` over one round of its stream
(:class:`~fedlt.federated_continual.online.OnlineClientData`); personalised evaluation is
on the client's local test set restricted to the classes its stream has exposed so far
(docs/federated_continual.md, "Evaluation").
"""

from __future__ import annotations

import numpy as np
import torch

from fedlt.config import ExperimentConfig
from fedlt.evaluation.federated import class_hits
from fedlt.federated.runtime import FederatedRuntime
from fedlt.federated_continual.online import (
    OnlineClientData,
    encode_client_state,
    memory_from_state,
    position_of,
    split_client_state,
)
from fedlt.federated_continual.streams import ClientStreams
from fedlt.seeding import derived_seed, seed_sequence, torch_generator
from strategies.federated.base import (
    ClientData,
    FederatedStrategy,
    LocalResult,
    StateDict,
)


class StreamEnded(RuntimeError):
    """A client whose stream has ended was asked to train."""


def mask_unexposed_logits(logits: torch.Tensor, exposed: torch.Tensor) -> torch.Tensor:
    """Logits of classes outside ``exposed`` at −inf (evaluation on the exposed classes)."""
    return logits.masked_fill(~exposed.to(logits.device).view(1, -1), float("-inf"))


class FederatedContinualRuntime(FederatedRuntime):
    """See the module docstring."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__(cfg)
        f = cfg.federated
        self.streams = ClientStreams(
            self.data.train.labels,
            self.data.client_indices,
            cfg.stream,
            cfg.seed,
            self.data.num_classes,
            f.rounds,
            f.participation,
        )
        self.uses_memory = bool(getattr(self.strategy, "uses_memory", True)) and (
            cfg.stream.memory_size > 0
        )

    def strategy_class(self) -> type[FederatedStrategy]:
        from strategies.federated_continual import stream_strategy

        return stream_strategy(self.cfg.strategy.name)

    def client_sizes(self) -> dict[int, int]:
        """A client's work per round: the samples it consumes."""
        return {
            k: min(self.streams.chunk_size(k), len(ix))
            for k, ix in enumerate(self.data.client_indices)
        }

    # -- training -------------------------------------------------------------------
    def train_client(
        self, client_id: int, round_: int, global_state: StateDict, client_state: StateDict | None
    ) -> LocalResult:
        self.raise_injected_failure(round_, client_id)
        ours, own = split_client_state(client_state)
        position = position_of(ours)
        plan = self.streams.plan(client_id, position)
        if not plan:
            raise StreamEnded(
                f"client {client_id}'s stream ended at sample {position}; it cannot train"
            )
        s = self.cfg.stream
        memory = None
        if self.uses_memory:
            memory = memory_from_state(
                ours,
                s.memory_size,
                s.memory_policy,
                seed_sequence(self.cfg.seed, "fcl_memory", round_, client_id),
            )
        exposed = torch.from_numpy(self.streams.exposed_mask(client_id, position)).to(self.device)
        data = OnlineClientData(
            plan,
            self.t.train_u8,
            self.t.train_y,
            self._normalise,
            exposed,
            self.data.num_classes,
            memory,
            s.online_iter,
            s.memory_batch_size,
            s.augment,
            s.crop_padding,
        )
        if not own:
            own = self.strategy.init_client_state(client_id)
        generator = torch_generator(self.cfg.seed, "client_train", round_, client_id)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            # learners may draw from the global RNG (dropout): seeded per (round, client)
            torch.manual_seed(derived_seed(self.cfg.seed, "fcl_learner", round_, client_id))
            result = self.strategy.local_update(
                global_state, own, data, self.train_config, generator
            )
        state = {**result.client_state, **encode_client_state(position + data.consumed, memory)}
        metrics = dict(result.metrics)
        return LocalResult(result.update, result.num_examples, state, metrics)

    # -- evaluation -----------------------------------------------------------------
    def personal_hits(
        self, client_id: int, round_: int, global_state: StateDict, client_state: StateDict | None
    ) -> dict[str, np.ndarray]:
        """Per-class hits per personal mode on the client's local test images of the
        classes its stream has exposed, with the other classes' logits at −inf."""
        ours, own = split_client_state(client_state)
        exposed = self.streams.exposed_mask(client_id, position_of(ours))
        test_idx = self.data.client_test_indices[client_id]
        labels = self.data.test.labels[test_idx].astype(np.int64)
        keep = exposed[labels]
        num_classes = self.data.num_classes
        if not keep.any():
            zeros = np.zeros(num_classes, dtype=np.int64)
            return {mode: zeros.copy() for mode in self.strategy.personal_modes}
        if not own:
            own = self.strategy.init_client_state(client_id)
        generator = torch_generator(self.cfg.seed, "client_eval", round_, client_id)
        empty = ClientData(
            x=self.t.train_u8[:0].float(), y=self.t.train_y[:0], num_classes=num_classes
        )
        predictor = self.strategy.personal_predictor(
            global_state, own, empty, self.train_config, generator
        )
        idx = torch.from_numpy(test_idx[keep].astype(np.int64)).to(self.device)
        logits = self._logits(predictor, self.t.test_u8[idx])
        mask = torch.from_numpy(exposed)
        return {
            mode: class_hits(
                mask_unexposed_logits(z, mask),
                labels[keep],
                num_classes,
                self.cfg.federated.mask_absent_classes,
            )
            for mode, z in logits.items()
        }
