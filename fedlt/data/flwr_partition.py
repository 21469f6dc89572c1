"""``data.partition.name: flwr_datasets:<Partitioner>`` (``fedlt[flwr-datasets]``).

See docs/partition.md, "Flower Datasets partitioners". The partitioner runs on fedlt's
training labels *after* the global long tail: they are wrapped in a small in-memory
``datasets.Dataset`` with a ``label`` column (plus the sample index), the partitioner's
``load_partition(k)`` is called for every client ``k`` and the indices it returns are
validated like those of any custom partitioner
(:func:`fedlt.data.partition.validate_partition`).

Constructor arguments: ``data.partition.options`` are passed through; fedlt fills in
``num_partitions`` (= ``data.partition.num_clients``), ``partition_by`` (``"label"``) and,
unless the options give one, ``seed`` (drawn from the run's partition stream, so the run
seed decides the partition).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from fedlt.config import PartitionConfig
from fedlt.errors import ConfigError
from fedlt.registry import call_plugin, did_you_mean

PREFIX = "flwr_datasets:"
KEY = "data.partition"
LABEL_COLUMN = "label"
INDEX_COLUMN = "fedlt_index"
INSTALL_HINT = "pip install 'fedlt[flwr-datasets]'"
SEED_LIMIT = 2**31 - 1


def is_flwr_datasets(name: str) -> bool:
    """Whether ``data.partition.name`` names a Flower Datasets partitioner."""
    return isinstance(name, str) and name.startswith(PREFIX)


def _module() -> Any:
    try:
        import flwr_datasets.partitioner as module
    except ImportError as exc:
        raise ConfigError(
            f"{KEY}.name", f"{PREFIX}<Partitioner> needs the flwr-datasets package: {INSTALL_HINT}"
        ) from exc
    return module


def _usable(module: Any, name: str) -> bool:
    found = getattr(module, name, None)
    return (
        inspect.isclass(found)
        and issubclass(found, module.Partitioner)
        and not inspect.isabstract(found)
        and not name.startswith("Vertical")  # those split columns, not samples
    )


def partitioner_class(name: str) -> type:
    """The class ``flwr_datasets.partitioner.<name>`` (ConfigError with close matches)."""
    module = _module()
    short = name.removeprefix(PREFIX)
    if _usable(module, short):
        return getattr(module, short)
    known = sorted(n for n in dir(module) if _usable(module, n))
    raise ConfigError(
        f"{KEY}.name",
        f"flwr_datasets.partitioner has no sample partitioner {short!r}"
        f"{did_you_mean(short, known)}; expected '{PREFIX}<Name>' with Name one of: "
        f"{', '.join(known)}",
    )


def constructor_kwargs(cls: type, cfg: PartitionConfig, seed: int) -> dict[str, Any]:
    """``cfg.options`` plus the arguments fedlt fills in; ConfigError if they do not fit."""
    params = inspect.signature(cls).parameters
    options = dict(cfg.options)
    if "num_partitions" in options:
        raise ConfigError(f"{KEY}.options.num_partitions", "set data.partition.num_clients instead")
    if options.get("partition_by", LABEL_COLUMN) != LABEL_COLUMN:
        raise ConfigError(
            f"{KEY}.options.partition_by",
            f"fedlt partitions by class label: leave it out or set {LABEL_COLUMN!r}, got "
            f"{options['partition_by']!r}",
        )
    kwargs = dict(options)
    if "num_partitions" in params:
        kwargs["num_partitions"] = cfg.num_clients
    if "partition_by" in params:
        kwargs["partition_by"] = LABEL_COLUMN
    if "seed" in params and "seed" not in options:
        kwargs["seed"] = seed
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"{KEY}.options",
            f"{cls.__name__} cannot be built with options {sorted(options)} ({exc}); its "
            f"arguments: {', '.join(params)} (num_partitions, partition_by and seed are "
            "filled in by fedlt)",
        ) from exc
    return kwargs


def check_flwr_partitioner(cfg: PartitionConfig) -> None:
    """Config-time check of the name and options; skipped if flwr-datasets is missing (the
    partition step then fails with the install hint)."""
    try:
        import flwr_datasets.partitioner  # noqa: F401
    except ImportError:
        return
    constructor_kwargs(partitioner_class(cfg.name), cfg, seed=0)


def flwr_datasets_partition(
    labels: np.ndarray, cfg: PartitionConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per-client index arrays from the configured Flower Datasets partitioner."""
    cls = partitioner_class(cfg.name)
    kwargs = constructor_kwargs(cls, cfg, int(rng.integers(0, SEED_LIMIT)))
    partitioner = call_plugin("partitioner", cfg.name, cls, **kwargs)
    from datasets import Dataset

    labels = np.asarray(labels, dtype=np.int64)
    table = {LABEL_COLUMN: labels, INDEX_COLUMN: np.arange(len(labels), dtype=np.int64)}
    partitioner.dataset = Dataset.from_dict(table)
    count = call_plugin("partitioner", cfg.name, lambda: partitioner.num_partitions)
    if count != cfg.num_clients:
        raise ConfigError(
            f"{KEY}.num_clients",
            f"{cls.__name__} with options {dict(cfg.options)} makes {count} partitions, but "
            f"data.partition.num_clients is {cfg.num_clients}",
        )
    parts = []
    for client in range(count):
        part = call_plugin("partitioner", cfg.name, partitioner.load_partition, client)
        parts.append(np.asarray(part[INDEX_COLUMN], dtype=np.int64))
    return parts
