"""The online stream engine on tiny synthetic data: exposure, memory, schedule, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedlt.config import ExperimentConfig
from fedlt.configtools import from_dict
from fedlt.continual.engine import Exposure, StreamEngine, build_stream, run_stream
from fedlt.data.base import ArrayDataset, DataSplits
from fedlt.runs import RunDirectory
from strategies.continual import CONTINUAL_LEARNERS, register
from strategies.continual.base import ModelLearner

NUM_CLASSES = 6


def tiny_splits(train_per_class: int = 30, test_per_class: int = 8, seed: int = 0) -> DataSplits:
    """Class templates + noise, 8×8 grey images (class-grouped order, like ImageFolder)."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(NUM_CLASSES, 8, 8, 1))

    def make(n):
        labels = np.repeat(np.arange(NUM_CLASSES), n)
        noise = rng.integers(0, 256, size=(len(labels), 8, 8, 1))
        images = ((templates[labels] * 3 + noise) // 4).astype(np.uint8)
        return ArrayDataset(images, labels, [f"c{c}" for c in range(NUM_CLASSES)])

    return DataSplits(make(train_per_class), make(test_per_class), "tiny", (0.5,), (0.25,))


def tiny_config(tmp_path, strategy: str = "er", **stream) -> ExperimentConfig:
    stream_cfg = {
        "num_tasks": 3,
        "disjoint_percent": 50,
        "blurry_percent": 20,
        "batch_size": 16,
        "online_iter": 2,
        "memory_size": 24,
        "memory_batch_size": 8,
        "eval_period": 40,
        "checkpoint_every": 1,
        "augment": "crop_flip",
        "crop_padding": 1,
        **stream,
    }
    return from_dict(
        ExperimentConfig,
        {
            "name": "tiny",
            "seed": 3,
            "engine": "continual",
            "output_dir": str(tmp_path),
            "model": {"name": "cnn_small", "options": {"width": 4, "feature_dim": 8}},
            "strategy": {"name": strategy, "options": {"lr": 0.01}},
            "stream": stream_cfg,
            "resources": {"device": "cpu", "num_threads": 1},
        },
    )


if "spy_er" not in CONTINUAL_LEARNERS:

    @register("spy_er")
    class SpyER(ModelLearner):
        """ER that records what the engine hands it."""

        uses_memory = True
        seen: list = []  # noqa: RUF012

        def train_step(self, x, y, exposed):
            SpyER.seen.append((y.clone(), exposed.clone(), x.shape[0]))
            return super().train_step(x, y, exposed)


def test_exposure_relabels_in_first_seen_order():
    exposure = Exposure.empty(5)
    assert exposure.expose(np.array([3, 1, 3])).tolist() == [0, 1, 0]
    assert exposure.expose(np.array([0, 1, 4, 0])).tolist() == [2, 1, 3, 2]
    assert exposure.exposed_classes().tolist() == [3, 1, 0, 4]
    assert exposure.mask(5, torch.device("cpu")).tolist() == [True] * 4 + [False]


def test_exposure_masking_and_memory_labels(tmp_path):
    cfg = tiny_config(tmp_path, "spy_er", augment="none")
    splits = tiny_splits()
    run = RunDirectory.create(cfg, tmp_path / "run")
    engine = StreamEngine(cfg, splits, run, progress=False)
    CONTINUAL_LEARNERS.get("spy_er").seen.clear()
    engine.run_all()
    seen = CONTINUAL_LEARNERS.get("spy_er").seen
    stream = engine.stream
    order = np.concatenate([t.indices for t in stream.tasks])
    first_seen = list(dict.fromkeys(splits.train.labels[order].tolist()))
    assert engine.exposure.exposed_classes().tolist() == first_seen
    assert len(seen) == cfg.stream.online_iter * sum(
        stream.num_batches(k, cfg.stream.batch_size) for k in range(stream.num_tasks)
    )
    for y, exposed, batch in seen:
        num_exposed = int(exposed.sum())
        assert exposed[:num_exposed].all() and not exposed[num_exposed:].any()
        assert int(y.max()) < num_exposed
        assert batch <= cfg.stream.batch_size + cfg.stream.memory_batch_size
    assert max(b for _, _, b in seen) == cfg.stream.batch_size + cfg.stream.memory_batch_size
    # memory: full, and every stored label is the exposed label of the sample's true class
    mem = engine.memory
    assert len(mem) == cfg.stream.memory_size
    assert np.array_equal(mem.labels, engine.exposure.label_of[splits.train.labels[mem.indices]])
    # unexposed outputs are -inf at test time
    exposed = torch.zeros(NUM_CLASSES, dtype=torch.bool)
    exposed[:2] = True
    engine.learner.eval()
    logits = engine.learner(engine.normalize(engine.test_images[:4]), exposed)
    assert torch.isinf(logits[:, 2:]).all() and torch.isfinite(logits[:, :2]).all()


def test_evaluation_schedule_and_records(tmp_path):
    cfg = tiny_config(tmp_path, "finetune", eval_period=40, augment="none")
    splits = tiny_splits()
    run = RunDirectory.create(cfg, tmp_path / "run")
    summary = run_stream(cfg, run, progress=False, splits=splits)
    records = run.read_metrics()
    stream = build_stream(cfg, splits)
    # expected periodic points: first batch end with samples seen > next multiple of 40
    expected, seen, nxt = [], 0, 40
    for size in stream.task_sizes:
        for begin in range(0, size, 16):
            seen += min(16, size - begin)
            if seen > nxt:
                expected.append(seen)
                nxt = (seen // 40 + 1) * 40
    periodic = [r for r in records if r["kind"] == "periodic"]
    assert [r["samples_seen"] for r in periodic] == expected
    assert all(0 < r["samples_seen"] - r["eval_point"] <= 16 for r in periodic)
    assert [r["eval_point"] % 40 for r in periodic] == [0] * len(periodic)
    ends = [r for r in records if r["kind"] == "task_end"]
    assert [r["samples_seen"] for r in ends] == np.cumsum(stream.task_sizes).tolist()
    # test set restricted to exposed classes: per-class keys are exactly the exposed classes
    assert len(ends[-1]["per_class"]) == ends[-1]["num_exposed"]
    assert set(summary["final"]) == {"A_auc", "A_avg", "A_last", "F_last"}
    assert summary["final"]["A_last"] == ends[-1]["acc"]
    last = summary["per_class"]["last"]
    assert len(last) == NUM_CLASSES
    assert all(last[int(c)] == acc for c, acc in ends[-1]["per_class"].items())
    assert run.is_complete and run.figure_path("accuracy").is_file()
    assert json.loads((run.path / "stream.json").read_text())["task_sizes"] == stream.task_sizes


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("strategy", ["er", "ewcpp", "lwf"])
def test_exact_resume_after_interrupt(tmp_path, strategy):
    cfg = tiny_config(tmp_path, strategy)
    splits = tiny_splits()
    full = RunDirectory.create(cfg, tmp_path / "full")
    full_checkpoints: list[int] = []
    expected = run_stream(
        cfg, full, progress=False, splits=splits, on_checkpoint=full_checkpoints.append
    )

    boundaries = set(np.cumsum(build_stream(cfg, splits).task_sizes).tolist())
    stopped = []

    def stop_mid_task(samples_seen: int) -> None:
        if samples_seen not in boundaries and not stopped:
            stopped.append(samples_seen)
            raise Interrupt

    part = RunDirectory.create(cfg, tmp_path / "part")
    with pytest.raises(Interrupt):
        run_stream(cfg, part, progress=False, splits=splits, on_checkpoint=stop_mid_task)
    # a record written after the checkpoint would be dropped by load_checkpoint; the log is
    # shorter than the full one at this point
    assert len(part.read_metrics()) < len(full.read_metrics())
    later_checkpoints: list[int] = []
    resumed = run_stream(
        cfg,
        RunDirectory(part.path, cfg),
        progress=False,
        splits=splits,
        on_checkpoint=later_checkpoints.append,
    )
    assert stopped and stopped[0] > 0
    # it continued from the checkpoint (not from scratch)
    assert later_checkpoints == [c for c in full_checkpoints if c > stopped[0]]
    assert part.metrics_path.read_bytes() == full.metrics_path.read_bytes()
    assert resumed["final"] == expected["final"]


def test_metrics_log_depends_on_the_seed(tmp_path):
    """The byte comparison of the resume test can fail: another seed gives another log."""
    splits = tiny_splits()
    a = RunDirectory.create(tiny_config(tmp_path), tmp_path / "a")
    run_stream(tiny_config(tmp_path), a, progress=False, splits=splits)
    cfg_b = tiny_config(tmp_path)
    cfg_b.seed = 4
    b = RunDirectory.create(cfg_b, tmp_path / "b")
    run_stream(cfg_b, b, progress=False, splits=splits)
    assert a.metrics_path.read_bytes() != b.metrics_path.read_bytes()


def test_restart_without_checkpoint_drops_stale_metrics(tmp_path):
    cfg = tiny_config(tmp_path, "finetune", augment="none")
    splits = tiny_splits()
    full = RunDirectory.create(cfg, tmp_path / "full")
    run_stream(cfg, full, progress=False, splits=splits)
    crashed = RunDirectory.create(cfg, tmp_path / "crashed")
    crashed.log_metrics(
        {"samples_seen": 1, "kind": "periodic", "acc": 0.0}
    )  # died before a checkpoint
    run_stream(cfg, crashed, progress=False, splits=splits)
    assert crashed.metrics_path.read_bytes() == full.metrics_path.read_bytes()


def test_long_tailed_stream_data(tmp_path):
    from fedlt.continual.engine import load_stream_data

    cfg = from_dict(
        ExperimentConfig,
        {
            "engine": "continual",
            "seed": 2,
            "data": {
                "source": "synthetic",
                "options": {
                    "num_classes": 10,
                    "image_size": 4,
                    "channels": 1,
                    "train_per_class": 100,
                },
                "longtail": {"profile": "exponential", "imbalance_factor": 10},
            },
            "stream": {"num_tasks": 2, "blurry_from_tail": True},
        },
    )
    splits = load_stream_data(cfg)
    counts = np.bincount(splits.train.labels, minlength=10)
    assert counts[0] == 100 and counts[-1] == 10 and (np.diff(counts) <= 0).all()
    stream = build_stream(cfg, splits)
    # D = (10·50//100)//2·2 = 4 disjoint, Bn = 6 blurry classes: the 6 rarest
    assert sorted(c for t in stream.tasks for c in t.blurry_classes) == list(range(4, 10))
    assert len(stream) == counts.sum()
