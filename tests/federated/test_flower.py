"""Through Flower's simulation engine on Ray (slow: each simulation starts Ray, ~10 s).

Kept to few Ray starts: one simulation over a pool of 3 SuperNodes on 2 workers (must equal
the in-process loop), one stopped by SIGINT and one by SIGTERM (exit status, resumable to
byte-identical metrics, no Ray process left), and one ``flwr run .`` on Flower's local
SuperLink. Pool sizes, cohort splits and placements without Ray are in test_pool.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from fedlt.cli import main as cli_main
from fedlt.config import load_config
from fedlt.runner import run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _records(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def test_flower_pool_equals_in_process_and_survives_a_failure(tiny_config, tmp_path, monkeypatch):
    from fedlt.federated import engine

    monkeypatch.setattr(engine, "max_blocks", lambda numel: 16)  # blocks of 3 and one of 1
    overrides = (
        "strategy.name=fedloge",
        "data.partition.num_clients=40",
        "federated.rounds=2",
        "federated.fail_clients=[[2, 3]]",
        "resources.ray_num_cpus=2",
        "resources.pool_size=3",  # more nodes than workers: messages queue, same numbers
    )
    flower = run_experiment(tiny_config(*overrides), run_dir=tmp_path / "flower", progress=False)
    records = _records(flower)
    assert [r["round"] for r in records] == [1, 2]
    assert list(records[1]["failed"]) == ["3"]
    assert "failed on purpose" in records[1]["failed"]["3"]
    summary = json.loads((flower / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["final"]["personal.gla_fr.top1_mean"] > 0.2
    inproc = run_experiment(
        tiny_config(*overrides), run_dir=tmp_path / "inproc", backend="inprocess", progress=False
    )
    assert (inproc / "metrics.jsonl").read_bytes() == (flower / "metrics.jsonl").read_bytes()


def _ray_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            pass
    return found


STOP_ARGS = [
    "name=stop",
    "strategy.name=fedavg",
    "data.partition.num_clients=20",
    "federated.rounds=8",
    "federated.local_epochs=3",
    "federated.checkpoint_every=10",  # the stop must write its own checkpoint
    "resources.device=cpu",
    "resources.ray_num_cpus=2",
]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_within_seconds_resumable_and_leaves_no_ray_process(signum, tmp_path):
    out = tmp_path / "runs"
    ray_tmp = tempfile.mkdtemp(prefix="fr", dir="/tmp")  # short: Ray's socket paths
    cmd = [sys.executable, "-m", "fedlt.cli", "run", "--no-progress"]
    for item in [*STOP_ARGS, f"output_dir={out}"]:
        cmd += ["--set", item]
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        logs = list(out.glob("stop-*/metrics.jsonl"))
        if logs and len(logs[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    assert proc.returncode == 128 + signum, err
    run = next(out.glob("stop-*"))
    assert str(run) in err and "Traceback" not in err
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == signal.Signals(signum).name
    done = len((run / "metrics.jsonl").read_text().splitlines())
    assert (run / "checkpoints" / f"step-{done}.pt").is_file()
    time.sleep(1)
    assert not _ray_processes(ray_tmp), "Ray processes left behind"

    # resumed (in-process: the same numbers) == an uninterrupted run
    resumed = run_experiment(resume=run, backend="inprocess", progress=False)
    straight = run_experiment(
        load_config(None, [*STOP_ARGS, f"output_dir={tmp_path / 'straight'}"]),
        backend="inprocess",
        progress=False,
    )
    assert (resumed / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()


def test_client_resources_no_node_can_satisfy_are_refused_before_ray_starts(tmp_path, capsys):
    code = cli_main(
        [
            "run",
            "--no-progress",
            "--set",
            f"output_dir={tmp_path}",
            "--set",
            "resources.num_cpus=64",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "resources.num_cpus" in err and "64" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_flwr_run_serves_every_partition_over_the_local_federation(tiny_config, tmp_path):
    """``flwr run .`` on Flower's default local federation (2 simulated SuperNodes) trains
    all 4 partitions as cohorts, gives the in-process numbers, and its SuperLink is stopped."""
    home = Path(tempfile.mkdtemp(prefix="fh", dir="/tmp"))
    experiment = tmp_path / "tiny.yaml"
    out = tmp_path / "flwr-runs"
    text = tiny_config(f"output_dir={out}").to_yaml()
    experiment.write_text(text)
    env = dict(
        os.environ,
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
    )
    flwr = str(Path(sys.executable).with_name("flwr"))
    cmd = [flwr, "run", str(REPO), "--stream", "--run-config", f'fedlt-config="{experiment}"']
    try:
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert done.returncode == 0, done.stdout + done.stderr
        runs = list(out.glob("tiny-*"))
        assert len(runs) == 1, done.stdout + done.stderr
        assert json.loads((runs[0] / "status.json").read_text())["status"] == "complete"
        assert "pool placement over 2 SuperNodes" in done.stdout + done.stderr
        cfg = load_config(experiment, [f"output_dir={tmp_path / 'inproc'}"])
        inproc = run_experiment(cfg, backend="inprocess", progress=False)
        assert (inproc / "metrics.jsonl").read_bytes() == (runs[0] / "metrics.jsonl").read_bytes()
    finally:
        for proc in _ray_processes(str(home)):  # the background SuperLink and its children
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()


def test_sweep_with_the_flower_backend_runs_each_run_over_the_pool(tmp_path):
    from fedlt.sweep import sweep_command

    tiny = ["data.partition.num_clients=4", "federated.rounds=2", "resources.ray_num_cpus=2"]
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "pool",
                "set": {
                    key: yaml.safe_load(value)
                    for key, value in (x.split("=", 1) for x in [*tiny, "strategy.name=fedavg"])
                },
                "seeds": [0],
            }
        )
    )
    out = tmp_path / "out"
    assert sweep_command(str(sweep), out=str(out), progress=False, backend="flower") == 0
    status = json.loads((out / "sweep_status.json").read_text())
    assert status["counts"]["done"] == 1
    [run] = list(out.glob("*/seed-0"))
    cfg = load_config(None, [*tiny, "strategy.name=fedavg", f"output_dir={tmp_path / 'ref'}"])
    ref = run_experiment(cfg, backend="inprocess", progress=False)
    assert (ref / "metrics.jsonl").read_bytes() == (run / "metrics.jsonl").read_bytes()
