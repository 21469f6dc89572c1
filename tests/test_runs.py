"""Run directories: never reused, atomic files, checkpoints truncate the metrics log."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from fedlt.config import load_config
from fedlt.errors import RunError
from fedlt.runs import BUSY_RETRY_S, RunDirectory, RunLock


@pytest.fixture
def cfg(tmp_path):
    return load_config(None, [f"output_dir={tmp_path / 'runs'}", "name=t"])


def test_create_never_reuses_a_directory(cfg):
    a = RunDirectory.create(cfg)
    b = RunDirectory.create(cfg)
    assert a.path != b.path
    assert (a.path / "config.yaml").is_file()
    assert RunDirectory.open(a.path).config == cfg
    with pytest.raises(RunError, match="already exists"):
        RunDirectory.create(cfg, a.path)


def test_checkpoint_restores_state_and_truncates_metrics(cfg):
    run = RunDirectory.create(cfg)
    run.log_metrics({"round": 1, "acc": 0.5})
    run.save_checkpoint({"w": torch.arange(3)}, step=1)
    run.log_metrics({"round": 2, "acc": 0.6})
    state, step = run.load_checkpoint()
    assert step == 1
    assert torch.equal(state["w"], torch.arange(3))
    assert [r["round"] for r in run.read_metrics()] == [1]


def test_only_two_checkpoints_are_kept(cfg):
    run = RunDirectory.create(cfg)
    for step in range(4):
        run.save_checkpoint({"step": step}, step=step)
    assert [s for s, _ in run.checkpoints()] == [2, 3]


def test_summary_marks_complete_and_failure_is_recorded(cfg):
    run = RunDirectory.create(cfg)
    assert not run.is_complete
    run.mark_failed("boom")
    assert json.loads((run.path / "status.json").read_text())["error"] == "boom"
    run.write_summary({"final": {}})
    assert run.is_complete


def test_tensorboard_mirrors_metrics_when_enabled(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(None, [f"output_dir={tmp_path}", "logging.tensorboard=true"])
    run = RunDirectory.create(cfg)
    run.log_metrics({"round": 1, "generic.global.top1": 0.25})
    run.log_metrics({"round": 2, "generic.global.top1": 0.5})
    run.write_summary({})
    events = EventAccumulator(str(run.path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("generic/global/top1")
    assert [(e.step, round(e.value, 3)) for e in scalars] == [(1, 0.25), (2, 0.5)]


def test_a_writer_waits_out_a_brief_look_at_its_lock(tmp_path) -> None:
    """``fedlt sweep --status`` (RunLock.owner_alive) holds a run's flock for an instant; a
    writer that starts in that instant asks again instead of refusing the run; a lock held
    longer than the retries is still refused."""
    fcntl = pytest.importorskip("fcntl")
    looker = open(tmp_path / "lock", "a+b")  # noqa: SIM115 - closed by the timer below
    fcntl.flock(looker.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    timer = threading.Timer(BUSY_RETRY_S, looker.close)  # let go after one retry interval
    timer.start()
    writer = RunLock(tmp_path)
    writer.acquire()
    timer.join()
    assert writer.held
    writer.release()

    holder = RunLock(tmp_path)
    holder.acquire()
    with pytest.raises(RunError, match="in use by process"):
        RunLock(tmp_path).acquire()  # held past every retry: refused
    holder.release()
