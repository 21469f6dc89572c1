"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def killed_run(tmp_path: Path) -> Callable[..., Path]:
    """``killed_run(cfg, round_)``: run ``cfg`` through the CLI (in-process backend) in a
    child process that SIGKILLs itself right after round ``round_``'s metrics are logged
    (``FEDLT_FAULT_KILL_AT_ROUND``, before that round's checkpoint); returns its run folder,
    left as a crash leaves it."""

    def run(cfg, round_: int) -> Path:
        killed = tmp_path / "killed"
        config_file = tmp_path / "killed.yaml"
        config_file.write_text(cfg.to_yaml())
        env = {**os.environ, "FEDLT_FAULT_KILL_AT_ROUND": str(round_)}
        cmd = [sys.executable, "-m", "fedlt.cli", "run", str(config_file), "--backend", "inprocess"]
        proc = subprocess.run(
            [*cmd, "--run-dir", str(killed), "--no-progress"], env=env, check=False
        )
        assert proc.returncode == -signal.SIGKILL
        return killed

    return run
