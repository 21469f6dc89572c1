"""Si-Blurry / i-Blurry stream generation (spec ``si-blurry-mvp.md`` §1).

The Si-Blurry sampler reproduces the official one (Moon et al., ICCV 2023, repository
moonjunyyy/Si-Blurry, commit c4024ce) bit for bit: one ``torch.Generator().manual_seed(seed)``
on the CPU drives, in this order,

1. ``order = randperm(C)``: the first ``D`` classes are disjoint, the next ``Bn`` blurry, with
   ``D = (C·N//100)//K·K`` and ``Bn = (C − D)//K·K`` (both floored to multiples of ``K``);
2. ``randint(0, D, (K−1,))`` sorted: cut points of the disjoint classes (skipped when D = 0);
3. ``randint(0, Bn, (K−1,))`` sorted: cut points of the blurry classes (skipped when Bn = 0);
4. ``randint(0, nb, (K−1,))`` sorted: quota cut points, ``nb = (#blurry-class samples)·M//100``
   (skipped when nb = 0); task k gives away its first ``quota_k`` blurry samples (dataset
   order) to a common pool;
5. ``randperm(len(pool))``: the pool is shuffled and handed back, ``quota_k`` samples to task
   k in task order (late tasks may get fewer, as in the official code);
6. one ``randperm`` per task: the order of that task's samples in the stream.

Extensions (the official sampler lacks them; defaults keep fidelity):

- ``scenario="i-blurry"``: the even split. The same ``randperm(C)`` picks the classes, but
  steps 2-4 draw nothing: cut points are ``⌊k·D/K⌋``, ``⌊k·Bn/K⌋`` and ``⌊k·nb/K⌋`` for
  ``k = 0..K``, so every task gets ``D/K`` disjoint and ``Bn/K`` blurry classes and the quotas
  differ by at most one sample. Steps 5-6 are unchanged.
- ``blurry_pick="random"``: in step 4 a task gives away a random ``quota_k`` of its blurry
  samples instead of the first ones in dataset order. For each task in order one
  ``randperm(len(blurry_idx[k]))`` is drawn right after the quota cut points; the first
  ``quota_k`` positions of it (sorted) leave the task. This matters for class-grouped
  datasets (ImageFolder), where "first in dataset order" means "from one or two classes".
- ``blurry_from_tail=True`` (long-tailed streams): the blurry classes are the ``Bn`` classes
  with the fewest training samples (ties broken by their place in ``order``), listed in
  ``order``; the disjoint classes are the first ``D`` of the remaining classes in ``order``.
  The draws are the same as without the option, so only the class roles change.
- Any label array is accepted (unequal class sizes: long-tailed streams); a class with no
  sample simply contributes nothing.
- ``task_split`` (federated continual learning, docs/federated_continual.md): steps 1-3 are
  the *class-to-task split* (:func:`draw_task_split`). Given a :class:`TaskSplit`, they are
  skipped (nothing drawn) and the split is used as given; steps 4-6 draw from ``seed`` as
  usual. So clients that share one split still draw their own quotas and orders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from fedlt.errors import ConfigError
from fedlt.seeding import si_blurry_generator

Scenario = Literal["si-blurry", "i-blurry"]
BlurryPick = Literal["first", "random"]


@dataclass
class TaskStream:
    """One task: its disjoint and blurry classes and the ordered dataset indices it streams."""

    disjoint_classes: list[int]
    blurry_classes: list[int]
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class Stream:
    """A whole stream: ``tasks[k].indices`` are read in order, task after task."""

    tasks: list[TaskStream]
    num_classes: int
    seed: int
    scenario: str = "si-blurry"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_sizes(self) -> list[int]:
        return [len(t) for t in self.tasks]

    def __len__(self) -> int:
        return sum(self.task_sizes)

    def batches(self, task: int, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
        """Consecutive index batches of task ``task`` (the last may be shorter), from batch
        number ``start`` on (used to resume mid-task)."""
        indices = self.tasks[task].indices
        for begin in range(start * batch_size, len(indices), batch_size):
            yield indices[begin : begin + batch_size]

    def num_batches(self, task: int, batch_size: int) -> int:
        return -(-len(self.tasks[task]) // batch_size)

    def to_json(self, labels: np.ndarray | None = None) -> dict[str, Any]:
        """Plain description (classes, sizes, indices; per-class counts when labels given)."""
        tasks = []
        for k, t in enumerate(self.tasks):
            entry: dict[str, Any] = {
                "task": k,
                "disjoint_classes": list(t.disjoint_classes),
                "blurry_classes": list(t.blurry_classes),
                "size": len(t),
            }
            if labels is not None:
                counts = np.bincount(labels[t.indices], minlength=self.num_classes)
                entry["class_counts"] = {int(c): int(n) for c, n in enumerate(counts) if n}
            entry["indices"] = t.indices.tolist()
            tasks.append(entry)
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "num_classes": self.num_classes,
            "num_tasks": self.num_tasks,
            "task_sizes": self.task_sizes,
            "params": dict(self.params),
            "tasks": tasks,
        }


def _cuts(gen: torch.Generator, total: int, num_tasks: int, even: bool) -> list[int]:
    """``[0] + sorted(randint(0, total, (K−1,))) + [total]`` (nothing drawn if total = 0),
    or the even cut points ``⌊k·total/K⌋`` for the i-Blurry split."""
    if even:
        return [k * total // num_tasks for k in range(num_tasks + 1)]
    if total == 0:
        return [0] * num_tasks + [0]
    draws = torch.randint(0, total, (num_tasks - 1,), generator=gen).sort().values.tolist()
    return [0, *draws, total]


def _indices_of(labels: np.ndarray, classes: list[int]) -> np.ndarray:
    """Dataset indices whose label is in ``classes``, in dataset index order."""
    if not classes:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(labels, np.asarray(classes, dtype=labels.dtype))).astype(np.int64)


def _class_roles(
    order: list[int], labels: np.ndarray, num_classes: int, d: int, bn: int, from_tail: bool
) -> tuple[list[int], list[int]]:
    """Disjoint and blurry class lists (see the module docstring for ``from_tail``)."""
    if not from_tail:
        return order[:d], order[d : d + bn]
    counts = np.bincount(labels, minlength=num_classes)
    rank = {c: i for i, c in enumerate(order)}
    tail = set(sorted(order, key=lambda c: (counts[c], rank[c]))[:bn])
    blurry = [c for c in order if c in tail]
    disjoint = [c for c in order if c not in tail][:d]
    return disjoint, blurry


@dataclass(frozen=True)
class TaskSplit:
    """Which classes are disjoint and which blurry in each task (steps 1-3)."""

    disjoint_classes: tuple[tuple[int, ...], ...]
    blurry_classes: tuple[tuple[int, ...], ...]

    @property
    def num_tasks(self) -> int:
        return len(self.disjoint_classes)


def draw_task_split(
    gen: torch.Generator,
    labels: np.ndarray,
    num_classes: int,
    num_tasks: int,
    disjoint_percent: int,
    even: bool,
    blurry_from_tail: bool,
) -> TaskSplit:
    """Steps 1-3 of the sampler from ``gen``: class order, disjoint and blurry cut points."""
    c, k_tasks = num_classes, num_tasks
    d = (c * disjoint_percent // 100) // k_tasks * k_tasks
    bn = (c - d) // k_tasks * k_tasks
    order = torch.randperm(c, generator=gen).tolist()
    disj, blur = _class_roles(order, labels, c, d, bn, blurry_from_tail)
    cd = _cuts(gen, d, k_tasks, even)
    cb = _cuts(gen, bn, k_tasks, even)
    return TaskSplit(
        tuple(tuple(disj[cd[k] : cd[k + 1]]) for k in range(k_tasks)),
        tuple(tuple(blur[cb[k] : cb[k + 1]]) for k in range(k_tasks)),
    )


def make_stream(
    labels: np.ndarray | list[int],
    num_tasks: int = 5,
    disjoint_percent: int = 50,
    blurry_percent: int = 10,
    seed: int = 1,
    scenario: Scenario = "si-blurry",
    blurry_pick: BlurryPick = "first",
    blurry_from_tail: bool = False,
    num_classes: int | None = None,
    task_split: TaskSplit | None = None,
) -> Stream:
    """Build a Si-Blurry (or i-Blurry) stream over the samples with these ``labels``.

    ``labels``: integer class of every training sample (any class sizes). ``num_classes``:
    defaults to ``max(labels) + 1``. ``task_split``: use this class-to-task split instead of
    drawing one (steps 1-3). See the module docstring for the exact procedure.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ConfigError(
            "stream", f"labels must be a 1-D integer array, got {labels.dtype}{labels.shape}"
        )
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ConfigError("stream", "labels must be >= 0")
    c = int(num_classes if num_classes is not None else (labels.max() + 1 if labels.size else 0))
    if labels.size and labels.max() >= c:
        raise ConfigError("stream", f"label {labels.max()} >= num_classes {c}")
    k_tasks = int(num_tasks)
    if k_tasks < 1:
        raise ConfigError("stream.num_tasks", f"must be >= 1, got {num_tasks}")
    if not 0 <= disjoint_percent <= 100:
        raise ConfigError(
            "stream.disjoint_percent", f"must lie in [0, 100], got {disjoint_percent}"
        )
    if not 0 <= blurry_percent <= 100:
        raise ConfigError("stream.blurry_percent", f"must lie in [0, 100], got {blurry_percent}")
    if scenario not in ("si-blurry", "i-blurry"):
        raise ConfigError(
            "stream.scenario", f"expected 'si-blurry' or 'i-blurry', got {scenario!r}"
        )
    if blurry_pick not in ("first", "random"):
        raise ConfigError(
            "stream.blurry_pick", f"expected 'first' or 'random', got {blurry_pick!r}"
        )
    even = scenario == "i-blurry"

    gen = si_blurry_generator(seed)
    if task_split is None:
        task_split = draw_task_split(
            gen, labels, c, k_tasks, disjoint_percent, even, blurry_from_tail
        )
    elif task_split.num_tasks != k_tasks:
        raise ConfigError(
            "stream.num_tasks",
            f"the given task split has {task_split.num_tasks} tasks, not {k_tasks}",
        )
    disjoint_classes = [list(t) for t in task_split.disjoint_classes]
    blurry_classes = [list(t) for t in task_split.blurry_classes]

    disjoint_idx = [_indices_of(labels, cls) for cls in disjoint_classes]
    blurry_idx = [_indices_of(labels, cls) for cls in blurry_classes]
    nb = sum(len(b) for b in blurry_idx) * blurry_percent // 100
    q = _cuts(gen, nb, k_tasks, even)
    quotas = [q[k + 1] - q[k] for k in range(k_tasks)]

    given: list[np.ndarray] = []
    for k in range(k_tasks):
        own = blurry_idx[k]
        if blurry_pick == "random" and len(own):
            perm = torch.randperm(len(own), generator=gen).numpy()
            leave = np.zeros(len(own), dtype=bool)
            leave[np.sort(perm[: quotas[k]])] = True
            given.append(own[leave])
            blurry_idx[k] = own[~leave]
        else:
            given.append(own[: quotas[k]])
            blurry_idx[k] = own[quotas[k] :]
    pool = np.concatenate(given) if given else np.zeros(0, dtype=np.int64)
    pool = pool[torch.randperm(len(pool), generator=gen).numpy()]
    for k in range(k_tasks):
        blurry_idx[k] = np.concatenate([blurry_idx[k], pool[: quotas[k]]])
        pool = pool[quotas[k] :]

    tasks = []
    for k in range(k_tasks):
        merged = np.concatenate([disjoint_idx[k], blurry_idx[k]]).astype(np.int64)
        merged = merged[torch.randperm(len(merged), generator=gen).numpy()]
        tasks.append(TaskStream(disjoint_classes[k], blurry_classes[k], merged))
    params = {
        "num_tasks": k_tasks,
        "disjoint_percent": disjoint_percent,
        "blurry_percent": blurry_percent,
        "blurry_pick": blurry_pick,
        "blurry_from_tail": blurry_from_tail,
        "quotas": quotas,
    }
    return Stream(tasks, c, int(seed), scenario, params)


def stream_from_config(
    labels: np.ndarray,
    stream_cfg: Any,
    seed: int,
    num_classes: int | None = None,
    task_split: TaskSplit | None = None,
) -> Stream:
    """:func:`make_stream` with the fields of a :class:`~fedlt.continual.config.StreamConfig`."""
    return make_stream(
        labels,
        num_tasks=stream_cfg.num_tasks,
        disjoint_percent=stream_cfg.disjoint_percent,
        blurry_percent=stream_cfg.blurry_percent,
        seed=seed,
        scenario=stream_cfg.scenario,
        blurry_pick=stream_cfg.blurry_pick,
        blurry_from_tail=stream_cfg.blurry_from_tail,
        num_classes=num_classes,
        task_split=task_split,
    )
