"""Every client's own Si-Blurry stream and how a round consumes it
(docs/federated_continual.md, "Streams").

Client k's stream is the stream engine's stream (:func:`fedlt.continual.stream.make_stream`)
over the labels of k's training partition, with the stream seed ``s`` (``stream.seed``, else
the run seed) derived for the client: ``derived_seed(s, "fcl_stream", k)``
(:mod:`fedlt.seeding`). With ``stream.task_sync: per_client`` that is all: each client draws
its own class-to-task split. With ``shared``, one split is drawn first, from
``derived_seed(s, "fcl_task_split")`` over the global training labels (so
``blurry_from_tail`` picks the classes that are rare in the whole federation), and every
client's stream uses it; the client's seed then draws only its quotas and orders.

Schedule. A client sampled in a round consumes the next ``c_k`` samples of its stream, from
its position ``p_k``: ``stream[p_k : p_k + c_k]``, with ``c_k = stream.samples_per_round``
or, when null, ``⌈n_k / max(1, round(rounds · participation))⌉``. The samples are cut into
online batches of ``stream.batch_size``, never across a task's end (a task's last batch may
be shorter), and a task's end is reported after its last batch. A stream that ends leaves
the sampling: client k is eligible while ``p_k < n_k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlt.continual.stream import Stream, TaskSplit, draw_task_split, stream_from_config
from fedlt.seeding import derived_seed, si_blurry_generator


@dataclass(frozen=True)
class OnlineBatch:
    """One online batch: global training-set indices (stream order), its task, and whether
    it is the task's last batch."""

    indices: np.ndarray
    task: int
    ends_task: bool


class ClientStreams:
    """The streams of all clients of one run (built lazily, one per client, then kept)."""

    def __init__(
        self,
        train_labels: np.ndarray,
        client_indices: list[np.ndarray],
        stream_cfg,
        seed: int,
        num_classes: int,
        rounds: int,
        participation: float,
    ) -> None:
        self.labels = np.asarray(train_labels, dtype=np.int64)
        self.client_indices = [np.asarray(ix, dtype=np.int64) for ix in client_indices]
        self.cfg = stream_cfg
        self.seed = stream_cfg.seed if stream_cfg.seed is not None else seed
        self.num_classes = num_classes
        self.expected_rounds = max(1, round(rounds * participation))
        self.split: TaskSplit | None = None
        if stream_cfg.task_sync == "shared":
            self.split = draw_task_split(
                si_blurry_generator(derived_seed(self.seed, "fcl_task_split")),
                self.labels,
                num_classes,
                stream_cfg.num_tasks,
                stream_cfg.disjoint_percent,
                stream_cfg.scenario == "i-blurry",
                stream_cfg.blurry_from_tail,
            )
        self._streams: dict[int, tuple[Stream, np.ndarray, np.ndarray]] = {}

    @property
    def num_clients(self) -> int:
        return len(self.client_indices)

    def client_seed(self, client: int) -> int:
        """The stream seed of ``client`` (see the module docstring)."""
        return derived_seed(self.seed, "fcl_stream", client)

    def _entry(self, client: int) -> tuple[Stream, np.ndarray, np.ndarray]:
        if client not in self._streams:
            local = self.labels[self.client_indices[client]]
            stream = stream_from_config(
                local, self.cfg, self.client_seed(client), self.num_classes, self.split
            )
            order = (
                np.concatenate([t.indices for t in stream.tasks])
                if stream.tasks
                else np.zeros(0, dtype=np.int64)
            )
            ends = np.cumsum(stream.task_sizes).astype(np.int64)
            self._streams[client] = (stream, self.client_indices[client][order], ends)
        return self._streams[client]

    def stream(self, client: int) -> Stream:
        """Client ``client``'s stream; its indices are positions in the client's partition."""
        return self._entry(client)[0]

    def order(self, client: int) -> np.ndarray:
        """The client's whole stream as global training-set indices, in stream order."""
        return self._entry(client)[1]

    def length(self, client: int) -> int:
        """``n_k``: samples in the client's stream (Si-Blurry can leave a few of a client's
        blurry samples out when a task holds fewer than its quota, as the official sampler)."""
        return len(self.order(client))

    def chunk_size(self, client: int) -> int:
        """``c_k``: samples the client consumes per participation."""
        if self.cfg.samples_per_round is not None:
            return int(self.cfg.samples_per_round)
        return max(1, math.ceil(self.length(client) / self.expected_rounds))

    def task_at(self, client: int, position: int) -> int:
        """The task of the sample at ``position`` (the number of tasks once past the end)."""
        return int(np.searchsorted(self._entry(client)[2], position, side="right"))

    def plan(self, client: int, position: int) -> list[OnlineBatch]:
        """The online batches of the client's next participation from ``position``."""
        _, order, ends = self._entry(client)
        stop = min(position + self.chunk_size(client), len(order))
        batches: list[OnlineBatch] = []
        start = position
        bs = self.cfg.batch_size
        while start < stop:
            task = int(np.searchsorted(ends, start, side="right"))
            task_end = int(ends[task])
            end = min(start + bs, stop, task_end)
            batches.append(OnlineBatch(order[start:end], task, end == task_end))
            start = end
        return batches

    def exposed(self, client: int, position: int) -> np.ndarray:
        """Classes in the first ``position`` samples of the client's stream, in first-seen
        order."""
        labels = self.labels[self.order(client)[:position]]
        classes, first = np.unique(labels, return_index=True)
        return classes[np.argsort(first, kind="stable")]

    def exposed_mask(self, client: int, position: int) -> np.ndarray:
        mask = np.zeros(self.num_classes, dtype=bool)
        mask[self.exposed(client, position)] = True
        return mask

    def describe(self) -> dict:
        """A plain description of every client's stream (``streams.json``)."""
        split = None
        if self.split is not None:
            split = [
                {"task": t, "disjoint_classes": list(d), "blurry_classes": list(b)}
                for t, (d, b) in enumerate(
                    zip(self.split.disjoint_classes, self.split.blurry_classes, strict=True)
                )
            ]
        clients = {}
        for k in range(self.num_clients):
            stream = self.stream(k)
            sizes = stream.task_sizes
            chunk = self.chunk_size(k)
            clients[str(k)] = {
                "length": self.length(k),
                "partition_size": len(self.client_indices[k]),
                "task_sizes": sizes,
                "empty_tasks": [t for t, n in enumerate(sizes) if n == 0],
                "samples_per_round": chunk,
                "participations_needed": -(-self.length(k) // chunk),
                "tasks": [
                    {"disjoint_classes": t.disjoint_classes, "blurry_classes": t.blurry_classes}
                    for t in stream.tasks
                ],
            }
        return {
            "task_sync": self.cfg.task_sync,
            "stream_seed": self.seed,
            "shared_split": split,
            "clients": clients,
        }
