"""Hostile input through ``fedlt run``: refused before anything is written, with a message
naming the key or file and no traceback; files fedlt reads cannot run code; one writer per
run; resume falls back to an older checkpoint, notices an edited config and cleans up after a
failed write. docs/reliability.md lists the cases."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fedlt.cli import main
from fedlt.config import load_config
from fedlt.errors import RunError
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory

HERE = Path(__file__).resolve().parent
TINY = [
    "name=tiny",
    "data.partition.num_clients=4",
    "federated.rounds=2",
    "federated.local_epochs=1",
    "federated.batch_size=32",
    "strategy.name=fedavg",
    "logging.progress=false",
    "resources.device=cpu",
]


@pytest.fixture(autouse=True)
def _plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """``reliability_plugins:<fn>`` importable in configs."""
    monkeypatch.syspath_prepend(str(HERE))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and everything printed by ``fedlt <argv>``."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_args(*overrides: str, config: str | None = None) -> list[str]:
    args = ["run", *([config] if config else []), "--backend", "inprocess", "--no-progress"]
    for item in [*TINY, *overrides]:
        args += ["--set", item]
    return args


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` (to show a refused resume changed nothing)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------- data files
def write_cifar10(root: Path, per_batch: int = 4) -> Path:
    """A valid CIFAR-10 python-pickle tree with a few images per batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


class WritesFile:
    """A pickle payload: unpickling it calls ``open(target, "w")``, creating the file."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.target, "w"))


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One bad input: ``make(tmp_path, monkeypatch)`` prepares files and returns the argv;
    the output must contain every fragment; ``kind`` says what must stay untouched."""

    make: Callable[[Path, pytest.MonkeyPatch], list[str]]
    fragments: tuple[str, ...]
    kind: str = "fresh"  # fresh: no run directory under tmp/runs; resume: tmp/run unchanged


def fresh(*overrides: str, fragments: tuple[str, ...]) -> Case:
    return Case(lambda tmp, mp: run_args(f"output_dir={tmp / 'runs'}", *overrides), fragments)


def with_files(
    write: Callable[[Path], list[str]], fragments: tuple[str, ...], config: str | None = None
) -> Case:
    """A case whose overrides name files ``write(tmp)`` made."""

    def make(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        overrides = write(tmp)
        cfg = str(tmp / config) if config else None
        return run_args(f"output_dir={tmp / 'runs'}", *overrides, config=cfg)

    return Case(make, fragments)


def _cifar(tmp: Path, damage: str) -> list[str]:
    root = tmp / "data"
    if damage == "missing":
        pass
    elif damage == "empty":
        root.mkdir()
    else:
        folder = write_cifar10(root)
        batch = folder / "data_batch_1"
        if damage == "truncated":
            batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
        else:
            batch.write_bytes(b"\x00not a pickle" * 10)
    return ["data.source=cifar10", f"data.root={root}", f"data.cache_dir={tmp / 'cache'}"]


def _partition_file(tmp: Path, kind: str) -> list[str]:
    path = tmp / ("part.npy" if kind.startswith("npy") else "part.json")
    if kind == "json":
        path.write_text("{not json")
    elif kind == "npy-short":
        np.save(path, np.zeros(7, dtype=np.int64))
    elif kind == "npy-ragged":
        np.save(path, np.array([[1, 2], [3]], dtype=object), allow_pickle=True)
    return ["data.partition.name=file", f"data.partition.path={path}"]


def _empty_image_folder(tmp: Path) -> list[str]:
    for split in ("train", "test"):
        for name in ("ant", "bee"):
            (tmp / "images" / split / name).mkdir(parents=True)
    return [
        "data.source=imagefolder",
        f"data.root={tmp / 'images'}",
        f"data.cache_dir={tmp / 'cache'}",
    ]


def _duplicate_key(tmp: Path) -> list[str]:
    (tmp / "dup.yaml").write_text("federated:\n  lr: 0.1\n  rounds: 2\n  lr: 0.2\n")
    return []


def _output_is_file(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "runs").write_text("a file")
    return run_args(f"output_dir={tmp / 'runs'}")


def _output_inside_file(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "file").write_text("a file")
    return run_args(f"output_dir={tmp / 'file' / 'runs'}")


def _output_read_only(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    """A read-only folder (``os.access`` says so, as it does on a read-only mount; root
    bypasses chmod, so the permission check is simulated)."""
    folder = tmp / "readonly"
    folder.mkdir()
    real_access = os.access
    mp.setattr(os, "access", lambda p, mode, **kw: Path(p) != folder and real_access(p, mode))
    return run_args(f"output_dir={folder / 'runs'}")


def _run_dir_exists(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "runs" / "taken").mkdir(parents=True)
    return [*run_args(f"output_dir={tmp / 'runs'}"), "--run-dir", str(tmp / "runs" / "taken")]


def _missing_config(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return run_args(f"output_dir={tmp / 'runs'}", config=str(tmp / "[red]x.yaml"))


def resume_case(prepare: Callable[[Path], list[str]], fragments: tuple[str, ...]) -> Case:
    """A resume of a copy of the module's unfinished run at ``tmp/run``."""

    def make(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        extra = prepare(tmp / "run")
        return ["run", "--resume", str(tmp / "run"), "--backend", "inprocess", *extra]

    return Case(make, fragments, kind="resume")


def _drop_client_state(run: Path) -> list[str]:
    shutil.rmtree(run / "client_state")
    return []


def _edit_config(run: Path) -> list[str]:
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("lr: 0.03", "lr: 0.05"))
    return []


def _hold_lock(run: Path) -> list[str]:
    holder = RunDirectory.open(run)
    holder.acquire_lock()
    _HELD.append(holder)
    return []


_HELD: list[RunDirectory] = []

CASES: dict[str, Case] = {
    # left a half-made run directory behind before
    "partitioner raises": fresh(
        "data.partition.name=reliability_plugins:raises",
        fragments=("partitioner 'reliability_plugins:raises' raised ZeroDivisionError",),
    ),
    "partitioner returns too few clients": fresh(
        "data.partition.name=reliability_plugins:too_few",
        fragments=("reliability_plugins:too_few", "expected 4", "data.partition.num_clients"),
    ),
    "partitioner returns only empty clients": fresh(
        "data.partition.name=reliability_plugins:all_empty",
        fragments=("reliability_plugins:all_empty", "every one of the 4 clients is empty"),
    ),
    "custom source raises": fresh(
        "data.source=reliability_plugins:broken_source",
        fragments=("data source 'reliability_plugins:broken_source' raised ValueError",),
    ),
    "partition file missing": fresh(
        "data.partition.name=file",
        "data.partition.path=/nonexistent/part.json",
        fragments=("data.partition.path", "/nonexistent/part.json", "not found"),
    ),
    "partition file not JSON": with_files(
        lambda t: _partition_file(t, "json"), ("part.json", "not valid JSON")
    ),
    "partition NPY of the wrong length": with_files(
        lambda t: _partition_file(t, "npy-short"), ("part.npy", "7 client ids for")
    ),
    "partition NPY of ragged lists (pickled)": with_files(
        lambda t: _partition_file(t, "npy-ragged"), ("part.npy", "pickled", "JSON")
    ),
    "data root missing": with_files(lambda t: _cifar(t, "missing"), ("data_batch_1", "not found")),
    "data root empty": with_files(lambda t: _cifar(t, "empty"), ("data_batch_1", "not found")),
    "data file corrupt": with_files(
        lambda t: _cifar(t, "corrupt"), ("data_batch_1", "cannot read CIFAR pickle")
    ),
    "CIFAR pickle truncated": with_files(
        lambda t: _cifar(t, "truncated"), ("data_batch_1", "cannot read CIFAR pickle")
    ),
    "image folder without images": with_files(
        _empty_image_folder, ("images/train", "no image files")
    ),
    "impossible min_size": fresh(
        "data.partition.min_size=100000", fragments=("data.partition.min_size", "exceeds")
    ),
    "impossible shard": fresh(
        "data.partition.name=shard",
        "data.partition.classes_per_client=100000",
        fragments=("data.partition.classes_per_client", "exceeds"),
    ),
    "model.options.bogus": fresh(
        "model.options.bogus=1", fragments=("model.options", "bogus", "cnn_small")
    ),
    "data.options.bogus": fresh(
        "data.options.bogus=1", fragments=("data.options.bogus", "unknown key")
    ),
    "data.options.test_fraction=1.5": fresh(
        "data.options.test_fraction=1.5",
        fragments=("data.options.test_fraction", "must lie in (0, 1)"),
    ),
    # ended in a traceback before
    "federated.eval_batch_size=0": fresh(
        "federated.eval_batch_size=0", fragments=("federated.eval_batch_size", "must be >= 1")
    ),
    "seed=-1": fresh("seed=-1", fragments=("seed", "[0, 2**63)")),
    "23-digit seed": fresh("seed=12345678901234567890123", fragments=("seed", "64-bit integer")),
    "output_dir is a file": Case(_output_is_file, ("output_dir", "is a file")),
    "output_dir inside a file": Case(_output_inside_file, ("output_dir", "which is a file")),
    "read-only output folder": Case(_output_read_only, ("output_dir", "not writable")),
    "--run-dir exists": Case(_run_dir_exists, ("--run-dir", "already exists")),
    "resume with client_state missing": resume_case(
        _drop_client_state, ("client_state", "is missing", "cannot be rebuilt")
    ),
    # accepted before
    "federated.lr=.inf": fresh("federated.lr=.inf", fragments=("federated.lr", "finite")),
    "federated.lr=.nan": fresh("federated.lr=.nan", fragments=("federated.lr", "finite")),
    "federated.lr=1e30": fresh(
        "federated.lr=1e30", fragments=("federated.lr", "must lie in (0, 10]")
    ),
    "data.partition.alpha=.inf": fresh(
        "data.partition.alpha=.inf", fragments=("data.partition.alpha", "finite")
    ),
    "data.longtail.imbalance_factor=.inf": fresh(
        "data.longtail.imbalance_factor=.inf",
        fragments=("data.longtail.imbalance_factor", "finite"),
    ),
    "duplicate YAML key": with_files(
        _duplicate_key, ("federated.lr", "dup.yaml", "line 4", "line 2"), config="dup.yaml"
    ),
    "federated.momentum=-1": fresh(
        "federated.momentum=-1", fragments=("federated.momentum", "[0, 1)")
    ),
    "federated.weight_decay=-1": fresh(
        "federated.weight_decay=-1", fragments=("federated.weight_decay", ">= 0")
    ),
    # path traversal
    "name=../../X": fresh("name=../../X", fragments=("name", "single folder name")),
    "name=a/b": fresh("name=a/b", fragments=("name", "'a/b'")),
    "name with a control character": fresh(
        'name="a\\tb"', fragments=("name", "'a\\tb' contains '\\t'")
    ),
    "name=..": fresh("name=..", fragments=("name", "'..'")),
    # smaller
    "markup in a value": fresh("federated.rounds=[[1]]", fragments=("got [[1]]",)),
    "markup in a path": Case(_missing_config, ("[red]x.yaml", "not found")),
    "edited config.yaml on resume": resume_case(
        _edit_config, ("config.yaml", "changed since the run started", "--force")
    ),
    "--resume with --run-dir": resume_case(
        lambda run: ["--run-dir", str(run.parent / "other")], ("--run-dir",)
    ),
    "resume of a run in use": resume_case(_hold_lock, ("in use by process", str(os.getpid()))),
}


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FedRep run (per-client state) of 3 rounds, checkpointed every round, made to look
    interrupted by removing its summary; copied by each test that resumes it."""
    root = tmp_path_factory.mktemp("base")
    cfg = load_config(
        None,
        [
            *TINY,
            "strategy.name=fedrep",
            "federated.rounds=3",
            "federated.checkpoint_every=1",
            f"output_dir={root}",
        ],
    )
    path = run_experiment(cfg, run_dir=root / "run", backend="inprocess", progress=False)
    (path / "summary.json").unlink()
    return path


def copy_run(base: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(base, target)
    return target


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_cleanly(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    case = CASES[name]
    before: dict[str, str] = {}
    if case.kind == "resume":
        run = copy_run(request.getfixturevalue("unfinished_run"), tmp_path)
    argv = case.make(tmp_path, monkeypatch)
    if case.kind == "resume":
        before = tree_digest(run)
    try:
        code, output = cli(capsys, *argv)
    finally:
        while _HELD:
            _HELD.pop().release_lock()
    assert code == 2, output
    assert "error: " in output, output
    for fragment in case.fragments:
        assert fragment in output, f"{fragment!r} not in {output!r}"
    assert "Traceback" not in output
    if case.kind == "resume":
        after = {k: v for k, v in tree_digest(run).items() if k != "lock"}
        assert after == {k: v for k, v in before.items() if k != "lock"}
        assert not (tmp_path / "other").exists()
    else:
        runs = tmp_path / "runs"
        assert not runs.is_dir() or [p.name for p in runs.iterdir()] in ([], ["taken"])
        if (tmp_path / "readonly").is_dir():
            assert list((tmp_path / "readonly").iterdir()) == []


def test_verbose_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = cli(capsys, *run_args(f"output_dir={tmp_path}", "seed=-1"), "-v")
    assert code == 2
    assert "Traceback" in output and "error: seed: " in output


def test_force_needs_resume(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = cli(capsys, "run", "--force")
    assert code == 2 and "--force only applies to --resume" in output


# ----------------------------------------------------------------------------- security
def test_the_payload_runs_code_when_unpickled(tmp_path: Path) -> None:
    """Sanity check of the crafted payload used below: plain unpickling creates the file."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(WritesFile(marker)))
    assert marker.exists()


def test_crafted_checkpoints_are_refused(
    unfinished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(unfinished_run, tmp_path)
    marker = tmp_path / "pwned"
    for _, path in RunDirectory.open(run).checkpoints():
        torch.save({"step": 3, "metrics_bytes": 0, "state": WritesFile(marker)}, path)
    code, output = cli(capsys, "run", "--resume", str(run), "--backend", "inprocess")
    assert code == 2
    assert "no readable checkpoint" in output and "pickled Python object (io.open)" in output
    assert "refuses to load" in output
    assert not marker.exists()


def test_a_crafted_newest_checkpoint_is_skipped(
    unfinished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(unfinished_run, tmp_path)
    marker = tmp_path / "pwned"
    newest = RunDirectory.open(run).checkpoints()[-1][1]
    torch.save({"step": 3, "metrics_bytes": 0, "state": WritesFile(marker)}, newest)
    code, output = cli(capsys, "run", "--resume", str(run), "--backend", "inprocess")
    assert code == 0, output
    assert "resuming from the older step-2.pt" in output
    assert not marker.exists()


def test_crafted_npy_partition_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([WritesFile(marker)], dtype=object), allow_pickle=True)
    args = run_args(
        f"output_dir={tmp_path / 'runs'}", "data.partition.name=file", f"data.partition.path={path}"
    )
    code, output = cli(capsys, *args)
    assert code == 2
    assert str(path) in output and "pickled Python objects" in output
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


def test_checkpoints_hold_plain_containers_only(tmp_path: Path) -> None:
    """numpy arrays and RNG states round-trip exactly through weights_only loading;
    objects that would need unpickling are refused when saving."""
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    run = RunDirectory.create(cfg, tmp_path / "run", lock=False)
    numpy_rng = np.random.RandomState(3).get_state()
    state = {
        "numpy_rng": numpy_rng,
        "indices": np.arange(5, dtype=np.int64),
        "empty": np.zeros(0, dtype=np.uint32),
        "scalar": np.float64(0.25),
        "pcg": np.random.default_rng(1).bit_generator.state,
        "raw": b"",
        "weights": {"w": torch.ones(2)},
    }
    path = run.save_checkpoint(state, step=1)
    raw = torch.load(path, weights_only=True)  # loads: only allowed types inside
    assert raw["format"] == "fedlt-checkpoint/2"
    loaded, step = run.load_checkpoint()
    assert step == 1
    assert loaded["numpy_rng"][0] == "MT19937"
    assert np.array_equal(loaded["numpy_rng"][1], numpy_rng[1])
    assert loaded["numpy_rng"][2:] == numpy_rng[2:]
    assert loaded["indices"].dtype == np.int64 and loaded["indices"].tolist() == [0, 1, 2, 3, 4]
    assert loaded["empty"].dtype == np.uint32 and loaded["empty"].shape == (0,)
    assert loaded["scalar"] == 0.25 and isinstance(loaded["scalar"], np.float64)
    assert loaded["pcg"] == state["pcg"] and loaded["raw"] == b""
    assert torch.equal(loaded["weights"]["w"], torch.ones(2))
    with pytest.raises(TypeError, match=r"state\['bad'\]: a WritesFile"):
        run.save_checkpoint({"bad": WritesFile(tmp_path / "x")}, step=2)


def test_format_1_checkpoints_still_load_but_not_with_a_payload(tmp_path: Path) -> None:
    """Checkpoints written before the plain-container format pickled numpy arrays as such;
    they load with numpy's array constructors allowed, and nothing else."""
    from fedlt.runs import read_checkpoint

    path = tmp_path / "step-1.pt"
    numpy_rng = np.random.RandomState(5).get_state()
    state = {"numpy_rng": numpy_rng, "index": np.arange(3), "w": torch.ones(1)}
    torch.save({"step": 1, "metrics_bytes": 0, "state": state}, path)
    loaded = read_checkpoint(path).state
    assert np.array_equal(loaded["numpy_rng"][1], numpy_rng[1])
    assert loaded["index"].tolist() == [0, 1, 2]
    marker = tmp_path / "pwned"
    for payload in (WritesFile(marker), np.array([WritesFile(marker)], dtype=object)):
        torch.save({"step": 1, "metrics_bytes": 0, "state": {**state, "x": payload}}, path)
        with pytest.raises(RunError, match="refuses to load"):
            read_checkpoint(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- lock
def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    first = RunDirectory.create(cfg, tmp_path / "run")
    second = RunDirectory.open(first.path)
    with pytest.raises(RunError, match=rf"in use by process {os.getpid()} on "):
        second.acquire_lock()
    first.release_lock()
    assert not (first.path / "lock").exists()
    second.acquire_lock()
    assert json.loads((first.path / "lock").read_text())["pid"] == os.getpid()
    second.release_lock()


def test_a_stale_lock_after_sigkill_is_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    run = RunDirectory.create(cfg, tmp_path / "run", lock=False)
    child = (
        "import os, signal, sys; from fedlt.runs import RunLock; "
        "RunLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(run.path)])
    assert proc.wait(timeout=120) == -signal.SIGKILL
    owner = json.loads((run.path / "lock").read_text())
    assert owner["pid"] == proc.pid
    run.acquire_lock()
    assert f"took over the stale lock of process {proc.pid}" in capsys.readouterr().err
    assert json.loads((run.path / "lock").read_text())["pid"] == os.getpid()
    run.release_lock()


# ----------------------------------------------------------------------------- resume
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    run = RunDirectory.create(cfg, tmp_path / "run", lock=False)
    run.log_metrics({"round": 1})
    run.save_checkpoint({"w": torch.arange(3)}, step=1)
    run.log_metrics({"round": 2})
    newest = run.save_checkpoint({"w": torch.arange(4)}, step=2)
    run.log_metrics({"round": 3})
    newest.write_bytes(newest.read_bytes()[:100])
    state, step = run.load_checkpoint()
    assert step == 1 and torch.equal(state["w"], torch.arange(3))
    assert [r["round"] for r in run.read_metrics()] == [1]
    err = capsys.readouterr().err
    assert "step-2.pt" in err and "resuming from the older step-1.pt" in err
    assert (newest.parent / "step-2.pt.unreadable").exists()
    assert run.status["skipped_checkpoints"] == [str(newest)]


def test_resume_after_a_truncated_checkpoint_gives_identical_metrics(
    unfinished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(unfinished_run, tmp_path)
    reference = (run / "metrics.jsonl").read_bytes()
    newest = RunDirectory.open(run).checkpoints()[-1][1]
    assert newest.name == "step-3.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    code, output = cli(capsys, "run", "--resume", str(run), "--backend", "inprocess")
    assert code == 0, output
    assert "resuming from the older step-2.pt" in output
    assert (run / "metrics.jsonl").read_bytes() == reference
    assert RunDirectory.open(run).is_complete


def test_an_edited_config_resumes_only_with_force(
    unfinished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(unfinished_run, tmp_path)
    _edit_config(run)
    code, output = cli(capsys, "run", "--resume", str(run), "--backend", "inprocess")
    assert code == 2 and "changed since the run started" in output
    code, output = cli(capsys, "run", "--resume", str(run), "--backend", "inprocess", "--force")
    assert code == 0, output
    assert "warning: " in output and "continuing with the edited config (--force)" in output
    status = RunDirectory.open(run).status
    assert status["status"] == "complete" and len(status["config_changes"]) == 1
    assert status["config_sha256"] == hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()


def test_disk_full_marks_the_run_failed_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """From the first metrics line on, every fsync under tmp_path fails with ENOSPC."""
    real_fsync = os.fsync
    full: list[bool] = []

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith("metrics.jsonl"):
            full.append(True)
        if full and name.startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, output = cli(capsys, *run_args(f"output_dir={tmp_path / 'runs'}"))
    assert code == 2, output
    assert "metrics.jsonl" in output and "No space left on device" in output
    assert "Traceback" not in output
    (run,) = (tmp_path / "runs").iterdir()
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "No space left" in status["error"]
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
    assert not (run / "lock").exists()
    assert (run / "metrics.jsonl").read_bytes() == b""  # the failed line was cut off


def test_a_failed_create_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fedlt.runs as runs

    def fail(path: Path, text: str) -> None:
        raise RunError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(runs, "atomic_write_text", fail)
    cfg = load_config(None, [f"output_dir={tmp_path / 'a' / 'b'}"])
    with pytest.raises(RunError, match="No space left"):
        RunDirectory.create(cfg)
    assert not (tmp_path / "a").exists()
