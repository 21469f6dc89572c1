"""The online stream engine (spec ``si-blurry-mvp.md`` §2).

Protocol, for every task in order and every batch of ``stream.batch_size`` new samples of
its (once-read) stream:

1. *class exposure*: classes seen for the first time get the next free label (first-seen
   order); the learner only ever sees these labels and the boolean ``exposed`` mask;
2. ``stream.online_iter`` optimizer steps on the batch, each with ``stream.memory_batch_size``
   fresh replay samples appended when the learner ``uses_memory`` and a fresh augmentation
   when ``stream.augment`` is on;
3. the batch is offered to the replay memory (dataset indices + exposed labels);
4. evaluation on every test image of an exposed class at the first step where the number of
   samples seen exceeds the next multiple of ``stream.eval_period`` (``periodic``), and at
   the end of each task (``task_end``, with per-class accuracies for ``F_last``).

Every evaluation is one line of ``metrics.jsonl``. Checkpoints (every
``stream.checkpoint_every`` periodic evaluations and at each task end) hold the learner
(optimizer included), the memory, the exposure map, every RNG state, the stream position
and the evaluation history, so ``run_stream`` on a run whose ``load_checkpoint()`` returns
state continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

from fedlt.config import ExperimentConfig
from fedlt.configtools import to_dict
from fedlt.continual.memory import ReplayMemory
from fedlt.continual.stream import Stream, stream_from_config
from fedlt.data.base import DataSplits
from fedlt.devices import configure_torch, resolve_device
from fedlt.errors import RunError
from fedlt.evaluation.continual import continual_metrics, plot_accuracy
from fedlt.seeding import derived_seed, seed_sequence, seeded_torch, torch_generator

STATE_VERSION = 1


_prepared: tuple[str, DataSplits] | None = None


def _data_key(cfg: ExperimentConfig) -> str:
    """What the stream data depends on: ``data`` and ``seed``."""
    return f"{cfg.seed}\n{yaml.safe_dump(to_dict(cfg.data), sort_keys=True)}"


def prepare_stream_data(cfg: ExperimentConfig) -> DataSplits:
    """:func:`load_stream_data`, kept for the next :func:`load_stream_data` of the same
    ``data`` and ``seed`` in this process (the preflight builds it; the run reuses it)."""
    global _prepared
    splits = load_stream_data(cfg)
    _prepared = (_data_key(cfg), splits)
    return splits


def load_stream_data(cfg: ExperimentConfig) -> DataSplits:
    """The data source, with the global long tail (``data.longtail``) applied to its train
    split by the preparation the federated engine uses too
    (:func:`fedlt.data.prepare.longtailed_splits`), so one seed keeps the same images in both.

    Data prepared by :func:`prepare_stream_data` for the same config is handed over (once).
    """
    global _prepared
    if _prepared is not None:
        key, splits = _prepared
        _prepared = None
        if key == _data_key(cfg):
            return splits
    from fedlt.data.prepare import longtailed_splits

    return longtailed_splits(cfg.data, cfg.seed)[0]


def build_stream(cfg: ExperimentConfig, splits: DataSplits) -> Stream:
    """The stream of ``cfg.stream`` over the train labels (seed: ``stream.seed`` or the run's)."""
    seed = cfg.stream.seed if cfg.stream.seed is not None else cfg.seed
    return stream_from_config(splits.train.labels, cfg.stream, seed, splits.num_classes)


def _to_chw(images: np.ndarray, device: torch.device) -> Tensor:
    """uint8 NHWC numpy → uint8 NCHW tensor on ``device``."""
    return (
        torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)
    )


class Augmenter:
    """Random crop (zero padding ``pad``) and optional horizontal flip of a uint8 batch,
    driven by its own CPU ``torch.Generator`` (the run seed's ``stream_augment`` stream;
    its state is checkpointed), or by ``generator`` when given."""

    def __init__(
        self, mode: str, pad: int, seed: int, generator: torch.Generator | None = None
    ) -> None:
        self.mode = mode
        self.pad = pad
        self.generator = generator or torch_generator(seed, "stream_augment")

    def __call__(self, x: Tensor) -> Tensor:
        if self.mode == "none":
            return x
        b, _, h, w = x.shape
        p = self.pad
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            off = torch.randint(0, 2 * p + 1, (2, b), generator=self.generator).to(x.device)
            rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, :, None]
            cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, :]
            batch = torch.arange(b, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        if self.mode == "crop_flip":
            flip = (torch.rand(b, generator=self.generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


@dataclass
class Exposure:
    """Original class → exposed label, in first-seen order (−1: not exposed yet)."""

    label_of: np.ndarray
    num_exposed: int = 0

    @classmethod
    def empty(cls, num_classes: int) -> Exposure:
        return cls(np.full(num_classes, -1, dtype=np.int64))

    def expose(self, labels: np.ndarray) -> np.ndarray:
        """Expose the new classes of ``labels`` (first-seen order); return relabelled labels."""
        classes, first = np.unique(labels, return_index=True)
        new = classes[self.label_of[classes] < 0]
        if len(new):
            new = new[np.argsort(first[np.isin(classes, new)], kind="stable")]
            self.label_of[new] = self.num_exposed + np.arange(len(new))
            self.num_exposed += len(new)
        return self.label_of[labels]

    def mask(self, num_outputs: int, device: torch.device) -> Tensor:
        mask = torch.zeros(num_outputs, dtype=torch.bool)
        mask[: self.num_exposed] = True
        return mask.to(device)

    def exposed_classes(self) -> np.ndarray:
        """Original class ids, in exposure order."""
        exposed = np.flatnonzero(self.label_of >= 0)
        return exposed[np.argsort(self.label_of[exposed])]


class StreamEngine:
    """Runs one learner over one stream; see the module docstring."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        splits: DataSplits,
        run: Any,
        progress: bool = True,
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> None:
        from fedlt.models import build_model
        from strategies.continual import CONTINUAL_LEARNERS, parse_options

        self.cfg = cfg
        self.scfg = cfg.stream
        self.run = run
        self.progress = progress
        self.on_checkpoint = on_checkpoint
        self.device = resolve_device(cfg.resources.device)
        self.num_classes = splits.num_classes
        self.stream = build_stream(cfg, splits)

        self.train_labels = np.asarray(splits.train.labels, dtype=np.int64)
        self.train_images = _to_chw(splits.train.images, self.device)
        mean = torch.tensor(splits.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(splits.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std
        self.test_labels = np.asarray(splits.test.labels, dtype=np.int64)
        self.test_images = _to_chw(splits.test.images, self.device)  # uint8, normalised per batch

        learner_cls = CONTINUAL_LEARNERS.get(cfg.strategy.name, "strategy.name")
        options = cfg.strategy.typed_options
        if options is None:  # options changed after the config was resolved
            options = parse_options(learner_cls, cfg.strategy.options, "strategy.options")
        image_shape = splits.image_shape

        def model_factory() -> torch.nn.Module:
            return build_model(cfg.model.name, self.num_classes, image_shape, cfg.model.options)

        with seeded_torch(cfg.seed, "model_init"):
            self.learner = learner_cls(
                options, model_factory, self.num_classes, self.device, cfg.seed
            )
        self.learner.to(self.device)
        self.uses_memory = bool(getattr(self.learner, "uses_memory", False))

        self.memory = ReplayMemory(
            self.scfg.memory_size if self.uses_memory else 0,
            self.scfg.memory_policy,
            seed_sequence(cfg.seed, "replay_memory"),
        )
        self.augment = Augmenter(self.scfg.augment, self.scfg.crop_padding, cfg.seed)
        self.exposure = Exposure.empty(self.num_classes)
        # the global torch RNG (dropout etc. in learners) runs inside fork_rng from this state
        self.torch_rng = torch_generator(cfg.seed, "learner_torch").get_state()
        self.cuda_rng: Tensor | None = None
        # stream position and bookkeeping
        self.task = 0
        self.batch = 0
        self.samples_seen = 0
        self.next_eval = self.scfg.eval_period
        self.num_periodic = 0
        self.history: list[dict[str, Any]] = []
        self.loss_sum = 0.0
        self.loss_count = 0
        self.elapsed = 0.0
        self.last_acc: float | None = None

    # -- data ---------------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        return x.float() * self.scale + self.shift

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, kind: str) -> dict[str, Any]:
        """Accuracy on every test image of an exposed class (and per-class at task ends)."""
        exposed_mask = self.exposure.mask(self.num_classes, self.device)
        label_of = self.exposure.label_of
        keep = np.flatnonzero(label_of[self.test_labels] >= 0)
        targets = torch.from_numpy(label_of[self.test_labels[keep]]).to(self.device)
        keep_t = torch.from_numpy(keep).to(self.device)
        self.learner.eval()
        correct = torch.zeros(len(keep), dtype=torch.bool, device=self.device)
        step = self.scfg.eval_batch_size
        for begin in range(0, len(keep), step):
            x = self.normalize(self.test_images[keep_t[begin : begin + step]])
            pred = self.learner(x, exposed_mask).argmax(dim=1)
            correct[begin : begin + step] = pred == targets[begin : begin + step]
        correct_np = correct.cpu().numpy()
        acc = float(correct_np.mean()) if len(keep) else 0.0
        record: dict[str, Any] = {
            "samples_seen": self.samples_seen,
            "task": self.task,
            "kind": kind,
            "acc": acc,
            "num_exposed": int(self.exposure.num_exposed),
            "train_loss": self.loss_sum / self.loss_count if self.loss_count else None,
        }
        if kind == "periodic" and self.scfg.eval_period > 0:
            # the eval point crossed (same across seeds, whose streams differ in size)
            p = self.scfg.eval_period
            record["eval_point"] = (self.samples_seen - 1) // p * p
        if kind == "task_end":
            classes = self.test_labels[keep]
            record["per_class"] = {
                str(c): float(correct_np[classes == c].mean()) for c in np.unique(classes)
            }
        return record

    def log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        self.run.log_metrics(record)
        self.last_acc = record["acc"]

    # -- training -----------------------------------------------------------------------
    def train_on_batch(self, indices: np.ndarray) -> None:
        labels = self.exposure.expose(self.train_labels[indices])
        exposed = self.exposure.mask(self.num_classes, self.device)
        x_new = self.train_images[torch.from_numpy(indices).to(self.device)]
        y_new = torch.from_numpy(labels).to(self.device)
        fixed_x = None if self.scfg.augment != "none" or self.uses_memory else self.normalize(x_new)
        for _ in range(self.scfg.online_iter):
            x, y = x_new, y_new
            if self.uses_memory and len(self.memory) and self.scfg.memory_batch_size:
                mem_idx, mem_lab = self.memory.sample(self.scfg.memory_batch_size)
                x = torch.cat([x, self.train_images[torch.from_numpy(mem_idx).to(self.device)]])
                y = torch.cat([y, torch.from_numpy(mem_lab).to(self.device)])
            xin = fixed_x if fixed_x is not None else self.normalize(self.augment(x))
            logs = self.learner.train_step(xin, y, exposed)
            self.loss_sum += float(logs.get("loss", 0.0))
            self.loss_count += 1
        if self.uses_memory:
            self.memory.add(indices, labels)
        self.samples_seen += len(indices)

    def periodic_due(self) -> bool:
        return self.scfg.eval_period > 0 and self.samples_seen > self.next_eval

    def _advance_eval_point(self) -> None:
        p = self.scfg.eval_period
        self.next_eval = (self.samples_seen // p + 1) * p

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "learner": self.learner.state_dict(),
            "memory": self.memory.state_dict(),
            "label_of": self.exposure.label_of.copy(),
            "num_exposed": self.exposure.num_exposed,
            "augment_rng": self.augment.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "task": self.task,
            "batch": self.batch,
            "samples_seen": self.samples_seen,
            "next_eval": self.next_eval,
            "num_periodic": self.num_periodic,
            "history": list(self.history),
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "elapsed": self.elapsed,
            "task_sizes": self.stream.task_sizes,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise RunError(f"checkpoint version {state.get('version')} != {STATE_VERSION}")
        if list(state["task_sizes"]) != self.stream.task_sizes:
            raise RunError("checkpoint was made on a different stream (task sizes differ)")
        self.learner.load_state_dict(state["learner"])
        self.memory.load_state_dict(state["memory"])
        self.exposure = Exposure(
            np.asarray(state["label_of"], dtype=np.int64), int(state["num_exposed"])
        )
        self.augment.generator.set_state(state["augment_rng"])
        self.torch_rng = state["torch_rng"]
        self.cuda_rng = state.get("cuda_rng")
        for key in ("task", "batch", "samples_seen", "next_eval", "num_periodic", "loss_count"):
            setattr(self, key, int(state[key]))
        self.loss_sum = float(state["loss_sum"])
        self.elapsed = float(state["elapsed"])
        self.history = list(state["history"])
        self.last_acc = self.history[-1]["acc"] if self.history else None

    def checkpoint(self) -> None:
        self.run.save_checkpoint(self.state_dict(), self.samples_seen)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.samples_seen)

    # -- main loop ----------------------------------------------------------------------
    def _status(self) -> str:
        acc = "-" if self.last_acc is None else f"{100 * self.last_acc:.1f}%"
        return (
            f"task {min(self.task + 1, self.stream.num_tasks)}/{self.stream.num_tasks} · acc {acc}"
        )

    def run_all(self) -> dict[str, Any]:
        """Run (or continue) the stream; returns the summary."""
        from fedlt.progress import progress_bar

        started = time.perf_counter()
        bs = self.scfg.batch_size
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.set_rng_state(self.torch_rng)
            if self.device.type == "cuda":
                if self.cuda_rng is not None:
                    torch.cuda.set_rng_state(self.cuda_rng, self.device)
                else:
                    torch.cuda.manual_seed(derived_seed(self.cfg.seed, "learner_cuda"))
            with progress_bar(
                f"{self.cfg.strategy.name}", len(self.stream), self.progress, self.samples_seen
            ) as bar:
                while self.task < self.stream.num_tasks:
                    num_batches = self.stream.num_batches(self.task, bs)
                    for indices in self.stream.batches(self.task, bs, self.batch):
                        self.train_on_batch(indices)
                        self.batch += 1
                        due_checkpoint = False
                        if self.periodic_due():
                            self._advance_eval_point()
                            self.log(self.evaluate("periodic"))
                            self.num_periodic += 1
                            every = self.scfg.checkpoint_every
                            due_checkpoint = every > 0 and self.num_periodic % every == 0
                        bar.update(self.samples_seen, self._status())
                        if due_checkpoint and self.batch < num_batches:
                            self.elapsed += time.perf_counter() - started
                            started = time.perf_counter()
                            self.checkpoint()
                    self.log(self.evaluate("task_end"))
                    self.learner.on_task_end(self.task)
                    self.task += 1
                    self.batch = 0
                    self.loss_sum, self.loss_count = 0.0, 0
                    bar.update(self.samples_seen, self._status())
                    self.elapsed += time.perf_counter() - started
                    started = time.perf_counter()
                    self.checkpoint()
        return self.summary()

    def final_per_class(self) -> list[float]:
        """Per-class accuracy at the end of the stream, indexed by class id (0 if unseen)."""
        ends = [r for r in self.history if r["kind"] == "task_end"]
        last = ends[-1].get("per_class", {}) if ends else {}
        return [float(last.get(str(c), 0.0)) for c in range(self.num_classes)]

    def task_boundaries(self) -> list[int]:
        return list(np.cumsum(self.stream.task_sizes)[:-1])

    def summary(self) -> dict[str, Any]:
        return {
            "engine": "continual",
            "name": self.cfg.name,
            "strategy": self.cfg.strategy.name,
            "seed": self.cfg.seed,
            "status": "complete",
            "wall_time_s": round(self.elapsed, 3),
            "final": continual_metrics(self.history),
            "per_class": {"last": self.final_per_class()},
            "samples": len(self.stream),
            "task_sizes": self.stream.task_sizes,
            "num_evaluations": len(self.history),
            "device": str(self.device),
        }


def run_stream(
    cfg: ExperimentConfig,
    run: Any,
    progress: bool = True,
    splits: DataSplits | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` (engine ``continual``) into ``run`` (a :class:`fedlt.runs.RunDirectory`),
    resuming from ``run.load_checkpoint()`` when it returns state.

    Writes ``metrics.jsonl`` (one line per evaluation), checkpoints, ``stream.json``,
    ``figures/accuracy.png`` and ``summary.json``; returns the summary (``final`` =
    ``A_auc``, ``A_avg``, ``A_last``, ``F_last``). ``splits`` overrides the data source (tests,
    scripts); ``on_checkpoint(samples_seen)`` is called after every checkpoint.
    """
    configure_torch(cfg.resources.num_threads, cfg.resources.flush_denormal)
    if splits is None:
        splits = load_stream_data(cfg)
    engine = StreamEngine(cfg, splits, run, progress, on_checkpoint)
    resumed = run.load_checkpoint()
    if resumed is not None:
        engine.load_state_dict(resumed[0])
    else:
        metrics_path = getattr(run, "metrics_path", None)
        if metrics_path is not None and metrics_path.is_file():
            metrics_path.unlink()  # a start that died before its first checkpoint
        run.write_json("stream.json", engine.stream.to_json(engine.train_labels))
    summary = engine.run_all()
    plot_accuracy(
        engine.history,
        run.figure_path("accuracy"),
        engine.task_boundaries(),
        f"{cfg.strategy.name} on {splits.name} (seed {cfg.seed})",
    )
    run.write_summary(summary)
    return summary
