"""Smoke tests generated from the registries (timm's pattern): every shipped federated
strategy, continual learner, model, data source and partitioner is exercised, so a new
registration is tested without editing this file (docs/api.md, "Adding a component").

The tables below hold per-name settings only where a name needs them (a ViT for prompt
learners, files for file-backed sources); a name missing from a table runs with the
defaults, and a table entry for a name that is not registered fails. Plus the import
boundary: nothing under ``strategies/`` imports Flower or Ray.
"""

from __future__ import annotations

import ast
import json
import math
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import fedlt
from fedlt.config import DataConfig, PartitionConfig
from fedlt.data.partition import PARTITIONERS, build_partition
from fedlt.data.sources import CIFAR10, CIFAR100, SOURCES, CifarLayout, load_source
from fedlt.errors import DataError
from fedlt.models import MODELS, FeatureModel, build_model
from fedlt.registry import Registry
from strategies.continual import CONTINUAL_LEARNERS
from strategies.federated import FEDERATED_STRATEGIES

REPO = Path(__file__).resolve().parent.parent
SHIPPED_PACKAGES = ("fedlt.", "strategies.")


def shipped(registry: Registry[Any]) -> list[str]:
    """The names registered by fedlt itself, in registration order (test plug-ins that
    other test modules register are left out)."""
    return [
        name
        for name in registry.in_order()
        if getattr(registry.get(name), "__module__", "").startswith(SHIPPED_PACKAGES)
    ]


# ----------------------------------------------------------------------------- per-name
TINY_VIT = {"img_size": 8, "patch_size": 4, "embed_dim": 24, "depth": 5, "num_heads": 3}
VIT_MODEL = {"name": "vit_tiny_test", "options": TINY_VIT}

FEDERATED_OPTIONS: dict[str, dict[str, Any]] = {
    "fedloge": {"sse_steps": 10, "sse_cache": False},  # the paper's 10,000 Adam steps: slow
}
CONTINUAL_MODELS: dict[str, dict[str, Any]] = {
    name: VIT_MODEL
    for name in ("l2p", "dualprompt", "mvp", "mvp_r")  # prompt learners
}
MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    "cnn_small": {"width": 4, "feature_dim": 8},
    "vit_tiny_test": TINY_VIT,
    "vit_base_patch16_224": {"pretrained": "none", **TINY_VIT, "depth": 1},
}
MODEL_SHAPES: dict[str, tuple[int, int, int]] = {"vit_tiny_test": (1, 8, 8)}
SOURCE_OPTIONS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "num_classes": 3,
        "image_size": 6,
        "channels": 1,
        "train_per_class": 5,
        "test_per_class": 2,
    },
}

# ----------------------------------------------------------------------------- strategies
FEDERATED_RUN = {
    "name": "smoke",
    "engine": "federated",
    "data": {
        "source": "synthetic",
        "options": {
            "num_classes": 4,
            "image_size": 8,
            "channels": 1,
            "train_per_class": 12,
            "test_per_class": 4,
        },
        "partition": {"name": "dirichlet", "num_clients": 3, "alpha": 1.0},
    },
    "model": {"name": "cnn_small", "options": MODEL_OPTIONS["cnn_small"]},
    "federated": {
        "rounds": 2,
        "local_epochs": 1,
        "batch_size": 16,
        "eval_every": 1,
        "checkpoint_every": 1,
    },
    "resources": {"device": "cpu", "num_threads": 1},
    "logging": {"progress": False},
}
CONTINUAL_RUN = {
    "name": "smoke",
    "engine": "continual",
    "data": {"source": "synthetic", "options": {**SOURCE_OPTIONS["synthetic"], "num_classes": 6}},
    "model": {"name": "cnn_small", "options": MODEL_OPTIONS["cnn_small"]},
    "stream": {
        "num_tasks": 2,
        "batch_size": 8,
        "online_iter": 1,
        "memory_size": 8,
        "memory_batch_size": 4,
        "eval_period": 12,
        "checkpoint_every": 1,
    },
    "resources": {"device": "cpu", "num_threads": 1},
    "logging": {"progress": False},
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded-data and SSE-C caches in the test's folder, not ~/.cache."""
    monkeypatch.setenv("FEDLT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", shipped(FEDERATED_STRATEGIES))
def test_federated_strategy_runs_two_rounds(name: str, tmp_path: Path) -> None:
    overrides = {"strategy.name": name, "strategy.options": FEDERATED_OPTIONS.get(name, {})}
    result = fedlt.run(
        FEDERATED_RUN, overrides=overrides, backend="inprocess", run_dir=tmp_path / "run"
    )
    assert result.status == "complete" and result.summary["strategy"] == name
    assert [m["round"] for m in result.metrics] == [1, 2]
    assert all(math.isfinite(m["train_loss"]) for m in result.metrics)
    cls = FEDERATED_STRATEGIES.get(name)
    generic = result.final[f"generic.{cls.generic_modes[0]}.top1"]
    personal = result.final[f"personal.{cls.personal_modes[0]}.top1_mean"]
    assert 0.0 <= generic <= 1.0 and 0.0 <= personal <= 1.0


@pytest.mark.parametrize("name", shipped(CONTINUAL_LEARNERS))
def test_continual_learner_runs_a_stream(name: str, tmp_path: Path) -> None:
    overrides: dict[str, Any] = {"strategy.name": name}
    if name in CONTINUAL_MODELS:
        overrides["model"] = CONTINUAL_MODELS[name]
    result = fedlt.run(
        CONTINUAL_RUN, overrides=overrides, backend="inprocess", run_dir=tmp_path / "run"
    )
    assert result.status == "complete" and result.summary["strategy"] == name
    assert [m["kind"] for m in result.metrics].count("task_end") == 2
    assert all(math.isfinite(m["acc"]) for m in result.metrics)
    assert 0.0 <= result.final["A_last"] <= 1.0


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", shipped(MODELS))
def test_model_builds_and_predicts(name: str) -> None:
    shape = MODEL_SHAPES.get(name, (3, 8, 8))
    model = build_model(name, 5, shape, MODEL_OPTIONS.get(name, {}))
    model.eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 5) and torch.isfinite(logits).all()
        if isinstance(model, FeatureModel):
            assert model.features(x).shape == (2, model.feature_dim)


def test_vit_base_without_local_weights_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default ``pretrained: in21k`` needs weights CI does not have: a clear DataError."""
    from fedlt.models import vit

    monkeypatch.setattr(vit, "find_cached_in21k", lambda: None)
    with pytest.raises(DataError, match="checkpoint_path"):
        build_model("vit_base_patch16_224", 5, (3, 8, 8), {})


# ----------------------------------------------------------------------------- sources
def write_cifar(root: Path, layout: CifarLayout, num_classes: int = 3, per_class: int = 2) -> Path:
    """A tiny CIFAR python-pickle tree in ``layout`` (the files the source reads)."""
    folder = root / layout.folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = [c for c in range(num_classes) for _ in range(per_class)]
    for name in (*layout.train_files, layout.test_file):
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        batch = {b"data": data, layout.label_key.encode(): labels}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = {layout.names_key.encode(): [f"class{c}".encode() for c in range(num_classes)]}
    (folder / layout.meta_file).write_bytes(pickle.dumps(names))
    return root


def write_image_folder(root: Path, classes: tuple[str, ...] = ("ant", "bee")) -> Path:
    """``root/{train,test}/<class>/<i>.png``, two 4×4 RGB images per class and split."""
    for split in ("train", "test"):
        for rank, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                pixels = np.full((4, 4, 3), 60 * rank + i, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


FILE_BACKED_SOURCES: dict[str, Callable[[Path], Path]] = {
    "cifar10": lambda root: write_cifar(root, CIFAR10),
    "cifar100": lambda root: write_cifar(root, CIFAR100),
    "imagefolder": write_image_folder,
}


def _load(name: str, root: Path | None, tmp_path: Path):
    options = SOURCE_OPTIONS.get(name, {})
    cfg = DataConfig(
        source=name,
        root=None if root is None else str(root),
        options=options,
        cache_dir=str(tmp_path / "cache"),
    )
    return load_source(cfg, seed=0)


@pytest.mark.parametrize("name", shipped(SOURCES))
def test_source_loads_train_and_test(name: str, tmp_path: Path) -> None:
    root = FILE_BACKED_SOURCES[name](tmp_path / "data") if name in FILE_BACKED_SOURCES else None
    splits = _load(name, root, tmp_path)
    for split in (splits.train, splits.test):
        assert len(split) > 0 and split.images.dtype == np.uint8 and split.images.ndim == 4
        assert split.labels.min() >= 0 and split.labels.max() < splits.num_classes
    channels = splits.image_shape[0]
    assert len(splits.mean) == len(splits.std) == channels


@pytest.mark.parametrize("name", sorted(FILE_BACKED_SOURCES))
def test_file_backed_source_without_files_is_a_data_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        _load(name, tmp_path / "missing", tmp_path)


# ----------------------------------------------------------------------------- partitioners
def _file_partition(folder: Path, num_samples: int) -> dict[str, Any]:
    """A JSON partition of ``num_samples`` samples over 3 clients, round robin."""
    path = folder / "partition.json"
    clients = {str(k): list(range(k, num_samples, 3)) for k in range(3)}
    path.write_text(json.dumps(clients))
    return {"path": str(path)}


PARTITION_FIELDS: dict[str, Callable[[Path, int], dict[str, Any]]] = {"file": _file_partition}


@pytest.mark.parametrize("name", shipped(PARTITIONERS))
def test_partitioner_gives_every_sample_to_one_client(name: str, tmp_path: Path) -> None:
    labels = np.repeat(np.arange(4), 6)
    fields = PARTITION_FIELDS[name](tmp_path, len(labels)) if name in PARTITION_FIELDS else {}
    cfg = PartitionConfig(name=name, num_clients=3, **fields)
    parts = build_partition(labels, cfg, np.random.default_rng(0))
    assert len(parts) == 3
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))


# ----------------------------------------------------------------------------- boundary
FORBIDDEN_IMPORTS = frozenset({"flwr", "ray"})
DYNAMIC_IMPORTS = frozenset({"import_module", "__import__"})


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``tree``, including
    ``importlib.import_module("...")`` and ``__import__("...")`` with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if called in DYNAMIC_IMPORTS and literal:
                yield node.lineno, first.value


def forbidden_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for line, module in imported_modules(tree)
        if module.split(".")[0] in FORBIDDEN_IMPORTS
    ]


def test_the_scanner_finds_every_kind_of_import() -> None:
    source = (
        "import flwr\nimport ray.tune as tune\nfrom flwr.common import Context\n"
        "from . import ray\nimport importlib\nimportlib.import_module('ray')\n"
        "__import__('flwr.server')\nimport rayon\n"
    )
    tree = ast.parse(source)
    found = [m for _, m in imported_modules(tree) if m.split(".")[0] in FORBIDDEN_IMPORTS]
    assert sorted(found) == ["flwr", "flwr.common", "flwr.server", "ray", "ray.tune"]


def test_strategies_never_import_flower_or_ray() -> None:
    files = sorted((REPO / "strategies").rglob("*.py"))
    assert len(files) > 10
    offenders = [hit for path in files for hit in forbidden_imports(path)]
    assert not offenders, "strategies/ must stay plain PyTorch:\n" + "\n".join(offenders)


# ----------------------------------------------------------------------------- tables
def test_per_name_tables_name_registered_components() -> None:
    """A renamed component must not silently lose its settings here."""
    tables = [
        (FEDERATED_OPTIONS, FEDERATED_STRATEGIES),
        (CONTINUAL_MODELS, CONTINUAL_LEARNERS),
        (MODEL_OPTIONS, MODELS),
        (MODEL_SHAPES, MODELS),
        (SOURCE_OPTIONS, SOURCES),
        (FILE_BACKED_SOURCES, SOURCES),
        (PARTITION_FIELDS, PARTITIONERS),
    ]
    for table, registry in tables:
        stale = sorted(set(table) - set(shipped(registry)))
        assert not stale, f"not registered {registry.kind}s: {stale}"


# -- the dependency direction ------------------------------------------------------------
INTERFACE_MODULES = ("fedlt.configtools", "fedlt.errors", "fedlt.registry", "fedlt.seeding")


def test_strategies_depend_only_on_fedlt_interface_modules_that_never_import_them():
    """strategies/ may import fedlt's leaf interface modules (and model builders); those must
    not import strategies back, so there is no package-level cycle."""
    import ast
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    used: set[str] = set()
    for path in (root / "strategies").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fedlt"):
                used.add(node.module or "")
    unexpected = {
        m for m in used if m not in INTERFACE_MODULES and not m.startswith("fedlt.models")
    }
    assert not unexpected, f"strategies/ imports fedlt internals {sorted(unexpected)}"
    code = (
        "import sys; import "
        + ", ".join([*INTERFACE_MODULES, "fedlt.models"])
        + ("; print(sorted(m for m in sys.modules if m.split('.')[0] == 'strategies'))")
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
