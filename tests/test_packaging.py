"""The wheel works on its own: built from a copy of the sources, installed into an empty
target folder, and run from an empty folder with nothing of the source tree importable
(docs/api.md, "Installing").

The subprocesses run ``python -S`` (no ``site``: the editable install's ``.pth`` finder is
never loaded) with ``PYTHONPATH`` = the target, then the interpreter's site-packages for the
dependencies; each asserts that ``fedlt`` was imported from the target.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "fedlt", "strategies", "simulations")
PACKAGES = ("fedlt", "strategies")

pytestmark = pytest.mark.slow


@dataclass
class Installed:
    """A wheel installed into ``site``, runnable without the source tree."""

    wheel: Path
    site: Path
    cache: Path

    def env(self) -> dict[str, str]:
        """PYTHONPATH = the target, then the dependencies' site-packages (no .pth files run
        under ``python -S``); other PYTHON* variables dropped."""
        paths = sysconfig.get_paths()
        deps = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), *deps])
        env["FEDLT_CACHE_DIR"] = str(self.cache)
        return env

    def python(self, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        """``python -S -P ARGS`` in ``cwd`` (an empty folder; ``-P``: not on sys.path)."""
        isolated = ["-S", "-P"] if sys.version_info >= (3, 11) else ["-S"]
        return subprocess.run(
            [sys.executable, *isolated, *args],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def fedlt(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        """The ``fedlt`` command (its entry point, ``fedlt.cli:main``) from the wheel."""
        return self.python("-m", "fedlt.cli", *args, cwd=cwd)


def _copy_sources(target: Path) -> None:
    """What the wheel is built from, without caches and build leftovers."""
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


def _pip(*args: str | Path) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    command = [sys.executable, "-m", "pip", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel offline (no build isolation, no index) and install it, alone, into an
    empty target folder."""
    root = tmp_path_factory.mktemp("wheel")
    _copy_sources(root / "src")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist",
         root / "src")  # fmt: skip
    (wheel,) = (root / "dist").glob("fedlt-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", root / "site", wheel)
    return Installed(wheel=wheel, site=root / "site", cache=root / "cache")


def _empty_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def _shipped_files() -> set[str]:
    """Every module of the packages and every YAML of simulations/, as wheel paths."""
    names = {
        p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    simulations = REPO / "simulations"
    names |= {
        f"fedlt/simulations/{p.relative_to(simulations).as_posix()}"
        for p in simulations.rglob("*.yaml")
    }
    return names


def test_wheel_holds_every_module_and_shipped_config(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(_shipped_files() - names)
    assert not missing, f"missing from the wheel (pyproject.toml [tool.setuptools]): {missing}"
    assert "fedlt/py.typed" in names


WHERE = """
import json, sys
import fedlt, fedlt.resources, strategies
print(json.dumps({
    "fedlt": fedlt.__file__,
    "strategies": strategies.__file__,
    "default": str(fedlt.resources.default_config_path()),
    "bundled": fedlt.resources.bundled_configs(),
    "path": sys.path,
}))
"""


def test_imports_come_from_the_wheel_only(installed: Installed, tmp_path: Path) -> None:
    folder = _empty_folder(tmp_path)
    done = installed.python("-c", WHERE, cwd=folder)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for key in ("fedlt", "strategies", "default"):
        assert Path(found[key]).is_relative_to(installed.site), (key, found[key])
    others = [folder / p for p in found["path"] if Path(p) != installed.site]
    assert str(REPO) not in found["path"]
    assert not [p for p in others if (p / "fedlt").exists() or (p / "strategies").exists()]
    assert "continual/er_digits.yaml" in found["bundled"]
    assert "sweeps/tiny.yaml" in found["bundled"]


def test_fedlt_config_prints_the_embedded_default(installed: Installed, tmp_path: Path) -> None:
    done = installed.fedlt("config", cwd=_empty_folder(tmp_path))
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)
    default = yaml.safe_load((REPO / "simulations" / "default.yaml").read_text())
    assert printed["name"] == default["name"]
    assert printed["strategy"]["name"] == default["strategy"]["name"]
    assert printed["federated"]["rounds"] == default["federated"]["rounds"]


def test_one_round_run_from_an_empty_folder(installed: Installed, tmp_path: Path) -> None:
    folder = _empty_folder(tmp_path)
    overrides = [
        "federated.rounds=1",
        "federated.local_epochs=1",
        "federated.eval_every=1",
        "data.partition.num_clients=2",
        "strategy.name=fedavg",
        "resources.device=cpu",
    ]
    sets = [arg for o in overrides for arg in ("--set", o)]
    done = installed.fedlt("run", "--backend", "inprocess", "--no-progress", *sets, cwd=folder)
    assert done.returncode == 0, done.stderr
    (summary_file,) = (folder / "runs").glob("default-*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "complete" and summary["rounds"] == 1
    assert 0.0 <= summary["final"]["generic.global.top1"] <= 1.0
