"""One round of a client's online learning (docs/federated_continual.md, "A client's round").

For every online batch of the round (:meth:`ClientStreams.plan`), as in the stream engine
(docs/continual.md, "Online protocol"):

1. the batch's classes are exposed to the client (``exposed`` grows; training logits of
   classes never seen by this client are −inf, :meth:`ClientData.masked`);
2. ``stream.online_iter`` steps, each on the batch plus ``stream.memory_batch_size`` fresh
   samples of the client's replay memory (when the method replays) and a fresh augmentation
   (``stream.augment``);
3. the batch is offered to the client's memory;
4. after a task's last batch, the strategy's task-end hooks run.

The client's persistent part (its stream position and its memory) travels in its client
state under ``fcl.*`` keys (:func:`encode_client_state`); the memory's random choices come
from the run seed's ``fcl_memory`` stream of (round, client), so they need no saved state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from fedlt.continual.engine import Augmenter
from fedlt.continual.memory import ReplayMemory
from fedlt.federated_continual.streams import OnlineBatch
from strategies.federated.base import ClientData, StateDict

POSITION_KEY = "fcl.position"
MEMORY_INDICES_KEY = "fcl.memory.indices"
MEMORY_LABELS_KEY = "fcl.memory.labels"
MEMORY_SEEN_KEY = "fcl.memory.num_seen"
PREFIX = "fcl."


def split_client_state(state: StateDict | None) -> tuple[StateDict, StateDict]:
    """(the engine's ``fcl.*`` part, the strategy's own part) of a client state."""
    state = state or {}
    ours = {k: v for k, v in state.items() if k.startswith(PREFIX)}
    return ours, {k: v for k, v in state.items() if not k.startswith(PREFIX)}


def position_of(state: StateDict | None) -> int:
    """Samples of its stream the client has consumed (0 before its first round)."""
    value = (state or {}).get(POSITION_KEY)
    return 0 if value is None else int(value)


def memory_from_state(
    ours: StateDict, size: int, policy: str, seed: np.random.SeedSequence
) -> ReplayMemory:
    """The client's replay memory as it was after its last round (empty at first)."""
    memory = ReplayMemory(size, policy, seed)
    if MEMORY_INDICES_KEY in ours:
        memory.indices = ours[MEMORY_INDICES_KEY].numpy().astype(np.int64)
        memory.labels = ours[MEMORY_LABELS_KEY].numpy().astype(np.int64)
        memory.num_seen = int(ours[MEMORY_SEEN_KEY])
    return memory


def encode_client_state(position: int, memory: ReplayMemory | None) -> StateDict:
    """The ``fcl.*`` tensors of a client state."""
    state = {POSITION_KEY: torch.tensor(position, dtype=torch.int64)}
    if memory is not None:
        state[MEMORY_INDICES_KEY] = torch.from_numpy(memory.indices.astype(np.int64))
        state[MEMORY_LABELS_KEY] = torch.from_numpy(memory.labels.astype(np.int64))
        state[MEMORY_SEEN_KEY] = torch.tensor(memory.num_seen, dtype=torch.int64)
    return state


class OnlineClientData(ClientData):
    """A client's round as :class:`ClientData`: :meth:`batches` yields the online steps
    (see the module docstring), so a strategy's ``local_update`` runs on a stream
    unchanged. ``len()`` is the number of new stream samples of the round (the
    aggregation weight); ``batch_size`` and ``shuffle`` are ignored (the stream decides)."""

    def __init__(
        self,
        plan: list[OnlineBatch],
        images_u8: Tensor,
        labels: Tensor,
        normalise: Callable[[Tensor], Tensor],
        exposed: Tensor,
        num_classes: int,
        memory: ReplayMemory | None,
        online_iter: int,
        memory_batch_size: int,
        augment: str,
        crop_padding: int,
    ) -> None:
        self.plan = plan
        self.images_u8 = images_u8
        self.labels = labels
        self.normalise = normalise
        self.memory = memory
        self.online_iter = online_iter
        self.memory_batch_size = memory_batch_size
        self.augment_mode = augment
        self.crop_padding = crop_padding
        self.num_classes = num_classes
        self.exposed = exposed
        self.augment = None
        self.task_end_hooks: list[Callable[[int], None]] = []
        self.consumed = 0
        self._started = False
        device = labels.device
        every = np.concatenate([b.indices for b in plan]) if plan else np.zeros(0, np.int64)
        self.x = images_u8[:0].float()
        self.y = labels[torch.from_numpy(every).to(device)]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batches(
        self, batch_size: int, generator: torch.Generator, shuffle: bool = True
    ) -> Iterator[tuple[Tensor, Tensor]]:
        if self._started:
            raise RuntimeError(
                "a client's stream is read once per round: this strategy iterates its "
                "training data more than once (several epochs or passes), which an online "
                "stream cannot serve"
            )
        self._started = True
        device = self.labels.device
        augmenter = (
            Augmenter(self.augment_mode, self.crop_padding, 0, generator)
            if self.augment_mode != "none"
            else None
        )
        for batch in self.plan:
            index = torch.from_numpy(batch.indices).to(device)
            y_new = self.labels[index]
            self.exposed[y_new] = True
            x_new = self.images_u8[index]
            for _ in range(self.online_iter):
                x, y = x_new, y_new
                if self.memory is not None and len(self.memory) and self.memory_batch_size:
                    mem_idx, mem_lab = self.memory.sample(self.memory_batch_size)
                    x = torch.cat([x, self.images_u8[torch.from_numpy(mem_idx).to(device)]])
                    y = torch.cat([y, torch.from_numpy(mem_lab).to(device)])
                if augmenter is not None:
                    x = augmenter(x)
                yield self.normalise(x), y
            if self.memory is not None:
                self.memory.add(batch.indices, y_new.cpu().numpy())
            self.consumed += len(batch.indices)
            if batch.ends_task:
                for hook in self.task_end_hooks:
                    hook(batch.task)
