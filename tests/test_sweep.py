"""fedlt sweep: plan/validation (no Ray), one run's task body, and real sweeps on local Ray.

The Ray tests share one local Ray session (``ray.init(num_cpus=2)``); ``run_sweep`` uses an
already-initialised Ray instead of starting its own.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import socket
from pathlib import Path

import pytest
import yaml

from fedlt.config import DEFAULT_CONFIG, resolve
from fedlt.errors import ConfigError
from fedlt.runs import RunDirectory, RunLock
from fedlt.sweep import (
    SweepOutcome,
    execute_run,
    last_json_line,
    load_sweep,
    note_running,
    run_sweep,
    status_lines,
    sweep_command,
)

RAY_TIP = "ignore:Tip. In future versions of Ray:FutureWarning"
TINY = {
    "federated.rounds": 2,
    "federated.eval_every": 1,
    "federated.checkpoint_every": 1,
    "data.partition.num_clients": 3,
    "federated.local_epochs": 1,
    "federated.batch_size": 32,
    "resources.device": "cpu",
}


def _write_sweep(folder: Path, **spec) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = {"base": str(DEFAULT_CONFIG), "set": TINY, "seeds": [0, 1]}
    body.update(spec)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


# -- planning and validation (no Ray) -------------------------------------------------------
def test_plan_labels_dirs_and_overrides(tmp_path: Path) -> None:
    sweep = _write_sweep(
        tmp_path,
        grid={"strategy.name": ["fedavg", "fedprox"], "data.partition.alpha": [0.5, 1]},
        runs=[{"label": "lr-small", "federated.lr": 0.01}, {"label": "plain"}],
        resources={"num_cpus": 1, "num_gpus": 0.25},
    )
    plan = load_sweep(sweep, tmp_path / "out")
    assert len(plan.runs) == 2 * 2 * 2 * 2
    dirs = {r.run_dir.relative_to(tmp_path / "out").as_posix() for r in plan.runs}
    assert "lr-small_fedprox_alpha=0.5/seed-1" in dirs and "plain_fedavg_alpha=1/seed-0" in dirs
    run = next(r for r in plan.runs if r.key == "lr-small_fedprox_alpha=1/seed-1")
    assert run.config.strategy.name == "fedprox"
    assert run.config.federated.lr == 0.01 and run.config.data.partition.alpha == 1.0
    assert run.config.seed == 1 and run.config.federated.rounds == 2
    assert (run.num_cpus, run.num_gpus) == (1.0, 0.25)


@pytest.mark.parametrize("name", ["tiny", "digits-demo", "cifar10-lt-methods"])
def test_shipped_sweeps_resolve(name: str, tmp_path: Path) -> None:
    sweep = DEFAULT_CONFIG.parent / "sweeps" / f"{name}.yaml"
    plan = load_sweep(sweep, tmp_path)
    methods = {r.config.strategy.name for r in plan.runs}
    assert {"fedavg", "fedloge"} <= methods
    if name == "cifar10-lt-methods":
        assert len(methods) == 8 and len(plan.runs) == 8 * 2 * 2 * 3
        assert {r.config.data.source for r in plan.runs} == {"cifar10"}


def test_last_json_line_reads_the_last_complete_line(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    assert last_json_line(log) is None  # missing
    log.write_text("")
    assert last_json_line(log) is None  # empty
    log.write_text('{"round": 1}\n{"round": 2, "pad": "' + "x" * 100 + '"}\n{"round": 3')
    # the window (16 bytes) is doubled until it holds the whole second line; the third is
    # still being written and does not count
    assert last_json_line(log, chunk=16) == {"round": 2, "pad": "x" * 100}
    log.write_text('{"round": 1}\n')
    assert last_json_line(log, chunk=4) == {"round": 1}
    log.write_text("[1, 2]\n")
    assert last_json_line(log) is None  # not an object
    log.write_text("not json\n")
    assert last_json_line(log) is None


def test_running_runs_are_marked_with_their_progress(tmp_path: Path) -> None:
    sweep = _write_sweep(tmp_path, seeds=[0, 1], set={**TINY, "federated.rounds": 10})
    plan = load_sweep(sweep, tmp_path / "out")
    outcome = SweepOutcome(plan, {r.key: {"state": "pending"} for r in plan.runs})
    first, second = plan.runs
    assert note_running(outcome, [first, second], look=True, now=0.0) == []
    assert outcome.counts["running"] == 0  # no run directory yet

    run = RunDirectory.create(first.config, first.run_dir, lock=False)
    run.log_metrics({"round": 1, "train_loss": 0.5})
    where = note_running(outcome, [first, second], look=True, now=100.0)
    assert where == [f"{first.key} round 1/10"]  # no pace yet: one position seen
    status = json.loads((plan.output_dir / "sweep_status.json").read_text())
    assert status["counts"]["running"] == 1 and status["counts"]["pending"] == 1
    assert status["runs"][0]["progress"] == "round 1/10" and "eta_s" not in status["runs"][0]

    for r in (2, 3):
        run.log_metrics({"round": r, "train_loss": 0.4})
    assert note_running(outcome, [first], look=False, now=150.0) == [f"{first.key} round 1/10"]
    # 2 rounds in 120 s since first seen: 7 left at 60 s each
    where = note_running(outcome, [first], look=True, now=220.0)
    assert where == [f"{first.key} round 3/10, ~7 min left"]
    status = json.loads((plan.output_dir / "sweep_status.json").read_text())
    assert status["runs"][0]["eta_s"] == 420


def test_a_resumed_run_is_paced_from_its_checkpoint(tmp_path: Path) -> None:
    """The first look may still see the killed driver's last round (7); the resumed run then
    cuts metrics.jsonl back to its checkpoint (3) and redoes rounds: the pace counts from
    there, not from round 7 (which gave a resumed Ditto run ~5.7 h left instead of ~45 min)."""
    plan = load_sweep(
        _write_sweep(tmp_path, seeds=[0], set={**TINY, "federated.rounds": 10}), tmp_path / "out"
    )
    (run,) = plan.runs
    outcome = SweepOutcome(plan, {run.key: {"state": "pending"}})
    directory = RunDirectory.create(run.config, run.run_dir, lock=False)
    for r in range(1, 8):
        directory.log_metrics({"round": r})
    assert note_running(outcome, [run], look=True, now=0.0) == [f"{run.key} round 7/10"]
    directory.log_metrics({"round": 8})  # the killed driver's last round, 60 s later
    assert note_running(outcome, [run], look=True, now=60.0) == [
        f"{run.key} round 8/10, ~2 min left"
    ]
    lines = directory.metrics_path.read_text().splitlines(keepends=True)
    directory.metrics_path.write_text("".join(lines[:3]))  # back to the round-3 checkpoint
    assert note_running(outcome, [run], look=True, now=70.0) == [f"{run.key} round 3/10"]
    assert (
        "eta_s" not in json.loads((plan.output_dir / "sweep_status.json").read_text())["runs"][0]
    )  # the estimate made before the cut is dropped, not shown as current
    for r in (4, 5):
        directory.log_metrics({"round": r})
    # 2 rounds in 100 s since the cut: 5 left at 50 s each
    assert note_running(outcome, [run], look=True, now=170.0) == [
        f"{run.key} round 5/10, ~4 min left"
    ]
    assert outcome.states[run.key]["eta_s"] == 250


def test_status_lines_say_where_each_run_is(tmp_path: Path) -> None:
    sweep = _write_sweep(tmp_path, seeds=[0, 1, 2, 3], set={**TINY, "federated.rounds": 10})
    plan = load_sweep(sweep, tmp_path / "out")
    lines = status_lines(plan)
    assert "4 not started (of 4)" in lines[0] and "no sweep_status.json" in lines[0]

    done, running, failed, killed = plan.runs
    for run in plan.runs:
        RunDirectory.create(run.config, run.run_dir, lock=False)
    for run in (running, killed):
        RunDirectory.at(run.run_dir).log_metrics({"round": 3})
        assert RunDirectory.at(run.run_dir).status.get("status") == "running"
    (done.run_dir / "status.json").write_text(json.dumps({"status": "complete"}))
    (failed.run_dir / "status.json").write_text(json.dumps({"status": "failed"}))
    writer = RunLock(running.run_dir)  # a live writer holds its lock; the killed one's is free
    writer.acquire()
    stale = {"pid": os.getpid(), "host": socket.gethostname(), "since": 0}  # no flock on it
    (killed.run_dir / "lock").write_text(json.dumps(stale))
    outcome = SweepOutcome(
        plan,
        {
            done.key: {"state": "done"},
            running.key: {"state": "running", "progress": "round 3/10", "eta_s": 420},
            failed.key: {"state": "failed", "error": "RuntimeError: boom"},
            killed.key: {"state": "running", "progress": "round 3/10", "eta_s": 420},
        },
    )
    outcome.save()
    written = json.loads((plan.output_dir / "sweep_status.json").read_text())["time"]
    try:
        lines = status_lines(plan, now=written + 600)
    finally:
        writer.release()
    assert lines[0].startswith(
        f"sweep {plan.name}: 1 done, 1 running, 1 failed, 1 interrupted (of 4)"
    )
    assert "written 10 min ago" in lines[0]
    by_run = {line.split()[0]: line for line in lines[1:]}
    assert by_run[done.key].split()[1] == "done"
    assert "round 3/10, ~7 min left" in by_run[running.key]
    assert "failed" in by_run[failed.key] and "RuntimeError: boom" in by_run[failed.key]
    assert by_run[killed.key].split()[1] == "interrupted"
    assert "run the sweep again to resume" in by_run[killed.key]
    assert "left" not in by_run[killed.key]  # no estimate for a run nobody is writing


def test_run_lock_owner_alive_asks_without_taking(tmp_path: Path) -> None:
    assert RunLock(tmp_path).owner_alive() is False  # no lock file at all
    writer = RunLock(tmp_path)
    writer.acquire()
    record = (tmp_path / "lock").read_text()
    assert RunLock(tmp_path).owner_alive() is True
    assert (tmp_path / "lock").read_text() == record  # asking wrote nothing
    assert writer.held  # and did not take the lock away
    writer.release()
    (tmp_path / "lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0}))
    assert RunLock(tmp_path).owner_alive() is None  # another host's run: cannot tell here


def test_cli_status_runs_nothing(tmp_path: Path, capsys) -> None:
    from fedlt.cli import main

    sweep = _write_sweep(tmp_path, seeds=[0])
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out), "--status"]) == 0
    printed = capsys.readouterr().out
    assert "1 not started (of 1)" in printed and "base/seed-0" in printed
    assert not out.exists()  # nothing written


def test_flower_backend_marks_each_run_running_before_it_starts(tmp_path: Path) -> None:
    plan = load_sweep(_write_sweep(tmp_path, seeds=[0, 1]), tmp_path / "out")
    seen = []

    def look(config, **kwargs):  # the run itself is not needed: record what the file says
        status = json.loads((plan.output_dir / "sweep_status.json").read_text())
        seen.append({r["seed"]: r["state"] for r in status["runs"]})
        raise RuntimeError("not run")

    console, _ = _console()
    run_sweep(plan, progress=False, runner=look, console=console, backend="flower")
    assert seen == [{0: "running", 1: "pending"}, {0: "failed", 1: "running"}]


SHIPPED_SWEEPS = sorted((DEFAULT_CONFIG.parent / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("sweep", SHIPPED_SWEEPS, ids=[p.stem for p in SHIPPED_SWEEPS])
def test_every_shipped_sweep_resolves(sweep: Path, tmp_path: Path) -> None:
    """Every sweep under simulations/sweeps/ resolves and validates (no data read, no Ray)."""
    plan = load_sweep(sweep, tmp_path)
    assert plan.runs, f"{sweep.name} plans no run"
    assert len({r.key for r in plan.runs}) == len(plan.runs)


def test_official_recipe_sweep_uses_the_official_draws(tmp_path: Path) -> None:
    plan = load_sweep(DEFAULT_CONFIG.parent / "sweeps" / "fedloge-official-recipe.yaml", tmp_path)
    assert {r.config.strategy.name for r in plan.runs} == {"fedavg", "fedloge"}
    for run in plan.runs:
        cfg = run.config
        assert (cfg.data.rng, cfg.data.normalization) == ("fedloge-official", "imagenet")
        assert (cfg.model.name, cfg.federated.local_epochs, cfg.federated.batch_size) == (
            "resnet18",
            5,
            8,
        )


def test_base_path_is_relative_to_the_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"name": "x", "federated": {"rounds": 7}}))
    sweep = _write_sweep(tmp_path / "sweeps", base="../exp.yaml", set=None, seeds=[3])
    (plan_run,) = load_sweep(sweep, tmp_path / "o").runs
    assert plan_run.config.federated.rounds == 7 and plan_run.label == "base"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            {"grid": {"federated.lr": [0.1, "fast"]}},
            r"federated.lr: expected a number.*sweep run 'lr=fast' seed 0",
        ),
        ({"grid": {"strategy.nme": ["fedavg"]}}, r"strategy.nme: unknown key.*sweep run"),
        ({"runs": [{"label": "a"}, {"label": "a"}]}, r"labels repeat.*\['a'\]"),
        ({"runs": [{"federated.lr": 0.1}]}, r"runs\[0\].label: every run needs"),
        ({"seeds": "zero"}, r"seeds: expected a non-empty list of integers"),
        ({"resources": {"cpus": 1}}, r"resources.cpus: unknown key.*num_cpus"),
        ({"gird": {}}, r"gird: unknown key \(did you mean 'grid'\?\)"),
        ({"base": "nowhere.yaml"}, r"base: experiment file not found"),
    ],
)
def test_bad_sweeps_fail_before_running(tmp_path: Path, spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_sweep(_write_sweep(tmp_path, **spec), tmp_path / "out")


# -- the task body (no Ray) -----------------------------------------------------------------
def test_task_resumes_a_checkpointed_run_and_records_failures(tmp_path: Path) -> None:
    cfg = resolve({}, ["federated.rounds=2"])
    calls = []

    def recording_runner(config, **kwargs):
        calls.append(kwargs)
        run = RunDirectory.open(kwargs["resume"])
        run.write_summary({"engine": "federated", "final": {}})
        return run.path

    run_dir = tmp_path / "r"
    RunDirectory.create(cfg, run_dir).save_checkpoint({"x": 1}, step=1)
    result = execute_run(cfg, str(run_dir), runner=recording_runner)
    assert result["state"] == "done" and result["resumed"] is True
    assert calls == [{"backend": "inprocess", "progress": False, "resume": run_dir}]

    def broken_runner(config, **kwargs):
        raise RuntimeError("diverged")

    result = execute_run(cfg, str(tmp_path / "never-made"), runner=broken_runner)
    assert result["state"] == "failed" and "RuntimeError: diverged" in result["error"]
    status = json.loads((tmp_path / "never-made" / "status.json").read_text())
    assert status["status"] == "failed" and "diverged" in status["error"]


# -- real sweeps on one local Ray session ---------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _console():
    from rich.console import Console

    buffer = io.StringIO()
    return Console(file=buffer, width=200, force_terminal=False), buffer


@pytest.mark.ray
@pytest.mark.filterwarnings(RAY_TIP)
def test_sweep_runs_in_parallel_reports_and_skips_finished_runs(
    local_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 methods × 2 seeds of the real tiny experiment (digits, 2 rounds, 3 clients)."""
    sweep = _write_sweep(tmp_path, grid={"strategy.name": ["fedavg", "fedprox"]})
    out = tmp_path / "out"
    assert sweep_command(str(sweep), out=str(out), progress=False) == 0

    status = json.loads((out / "sweep_status.json").read_text())
    assert status["counts"]["done"] == 4 and status["counts"]["failed"] == 0
    runs = {(r["label"], r["seed"]): r for r in status["runs"]}
    assert set(runs) == {(m, s) for m in ("fedavg", "fedprox") for s in (0, 1)}
    for label, seed in runs:
        summary = json.loads((out / label / f"seed-{seed}" / "summary.json").read_text())
        assert summary["strategy"] == label and summary["seed"] == seed
    spans = sorted((r["started"], r["finished"]) for r in status["runs"])
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "no two runs overlapped"
    assert len({r["pid"] for r in status["runs"]}) >= 2

    report = (out / "report" / "report.md").read_text()
    table_rows = [
        line for line in report.splitlines() if line.startswith(("| fedavg", "| fedprox"))
    ]
    assert table_rows and all("±" in row for row in table_rows[:2])
    assert (out / "report" / "federated.csv").is_file()

    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/*") if p.is_file()}

    def must_not_run(config, **kwargs):
        raise AssertionError("a finished run was started again")

    console, buffer = _console()
    plan = load_sweep(sweep, out)
    again = run_sweep(plan, progress=True, runner=must_not_run, console=console)
    assert again.counts["skipped"] == 4 and again.counts["done"] == again.counts["failed"] == 0
    assert "0 done, 0 failed, 4 skipped" in buffer.getvalue()
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # editing the sweep without a new label reuses the old runs, with a warning naming the key
    edited = _write_sweep(
        tmp_path, grid={"strategy.name": ["fedavg", "fedprox"]}, set={**TINY, "federated.lr": 0.2}
    )
    console, buffer = _console()
    third = run_sweep(load_sweep(edited, out), progress=False, runner=must_not_run, console=console)
    assert third.counts["skipped"] == 4
    assert "different federated.lr" in buffer.getvalue()
    assert third.states["fedavg/seed-0"]["config_changed"] == ["federated.lr"]


@pytest.mark.ray
@pytest.mark.filterwarnings(RAY_TIP)
def test_failed_run_is_recorded_and_retried(local_ray, tmp_path: Path) -> None:
    sweep = _write_sweep(tmp_path, runs=[{"label": "ok"}, {"label": "bad"}], seeds=[0])

    def fail_bad(config, **kwargs):
        from fedlt.runner import run_experiment

        if config.name == "bad":
            raise RuntimeError("injected failure")
        return run_experiment(config, **kwargs)

    out = tmp_path / "out"
    assert sweep_command(str(sweep), out=str(out), progress=False, runner=fail_bad) == 1
    status = json.loads((out / "sweep_status.json").read_text())
    by_label = {r["label"]: r for r in status["runs"]}
    assert by_label["ok"]["state"] == "done"
    assert by_label["bad"]["state"] == "failed" and "injected failure" in by_label["bad"]["error"]
    run_status = json.loads((out / "bad" / "seed-0" / "status.json").read_text())
    assert run_status["status"] == "failed"

    console, _ = _console()
    again = run_sweep(load_sweep(sweep, out), progress=False, console=console)
    assert again.counts == {"done": 1, "failed": 0, "skipped": 1, "running": 0, "pending": 0}
    assert (out / "bad" / "seed-0" / "summary.json").is_file()
    assert (out / "bad" / "seed-0.attempt-1" / "status.json").is_file()  # the failed try is kept
