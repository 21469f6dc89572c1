"""Client partitioners and the validation every partition goes through.

Protocol. Every partitioner is called as ``fn(labels, num_clients, rng, **options)``: a
custom one named in YAML as ``package.module:callable`` gets ``data.partition.options``, a
built-in one the ``data.partition`` fields it names (``alpha``, ``min_size``,
``classes_per_client``, ``path``). All return a list of index arrays (one per client, in
client order) or a mapping ``client id -> indices``. A partitioner that assigns a sample to
several clients on purpose sets the attribute ``allows_overlap = True``.
:func:`build_partition` checks every result (types, range, duplicates, client count) and
raises :class:`PartitionError` naming the partitioner and the offending client / index.

Built-ins: ``iid``, ``dirichlet`` (FedLoGe's per-sample rule; a minimum-size variant when
``min_size > 0``), ``shard`` and ``file``. ``flwr_datasets:<Partitioner>`` runs a Flower
Datasets partitioner with ``cfg.options`` as its arguments (:mod:`fedlt.data.flwr_partition`,
docs/partition.md); its result goes through the same validation.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.config import PartitionConfig
from fedlt.data.flwr_partition import (
    check_flwr_partitioner,
    flwr_datasets_partition,
    is_flwr_datasets,
)
from fedlt.errors import ConfigError, PartitionError
from fedlt.registry import Registry, call_plugin

Partitioner = Callable[..., Any]
PARTITIONERS: Registry[Partitioner] = Registry("partitioner")
KEY = "data.partition"
log = logging.getLogger(__name__)


def group_by_client(owner: np.ndarray, num_clients: int) -> list[np.ndarray]:
    """Turn a per-sample client id array into per-client sorted index arrays (vectorised)."""
    order = np.argsort(owner, kind="stable")
    sizes = np.bincount(owner, minlength=num_clients)
    return [part.astype(np.int64) for part in np.split(order, np.cumsum(sizes)[:-1])]


BUILTIN_FIELDS = ("alpha", "min_size", "classes_per_client", "path")
"""The data.partition fields a built-in partitioner may take as keyword options."""


@PARTITIONERS.register("iid")
def iid_partition(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffle, then cut into ``num_clients`` near-equal parts (sizes differ by at most 1)."""
    order = rng.permutation(len(labels))
    return [np.sort(part).astype(np.int64) for part in np.array_split(order, num_clients)]


def dirichlet_owners(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """FedLoGe's per-sample Dirichlet rule (Xiao et al., ICLR 2024; docs/partition.md): a
    client id for every sample.

    For each class c: ``q_c ~ Dir(alpha * 1_N)``, then every sample of c independently goes
    to client ``k ~ Categorical(q_c)``. No retry loop, so it always terminates; clients may
    end up empty. One vectorised draw per class (inverse-CDF sampling).
    """
    labels = np.asarray(labels)
    owner = np.empty(len(labels), dtype=np.int64)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        q = rng.dirichlet(np.full(num_clients, alpha))
        if not np.all(np.isfinite(q)) or q.sum() <= 0:  # underflow at tiny alpha
            q = np.zeros(num_clients)
            q[rng.integers(num_clients)] = 1.0
        cdf = np.cumsum(q)
        cdf /= cdf[-1]
        draws = np.searchsorted(cdf, rng.random(len(members)), side="right")
        owner[members] = np.minimum(draws, num_clients - 1)
    return owner


def enforce_min_size(
    parts: list[np.ndarray], min_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Move samples from the largest clients to clients below ``min_size``.

    Rule: while some client k has fewer than ``m = min_size`` samples, take the client d with
    the most samples and move ``min(m - |k|, |d| - m)`` of d's samples (chosen at random) to
    k. Termination (given ``N * m <= n``, checked by the caller): while a client is below m,
    the total is at least N·m, so the largest client has more than m samples and the move is
    non-empty; no move pushes a client below m; each move either completes k (at most N such
    moves) or brings d down to exactly m, after which d never donates again (at most N such
    moves). Hence at most 2N moves.
    """
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    if sizes.sum() < len(parts) * min_size:
        raise ValueError("not enough samples for the minimum client size")
    for k in range(len(parts)):
        while sizes[k] < min_size:
            donor = int(np.argmax(sizes))
            count = int(min(min_size - sizes[k], sizes[donor] - min_size))
            pick = rng.permutation(sizes[donor])
            moved = parts[donor][pick[:count]]
            parts[donor] = np.sort(parts[donor][pick[count:]])
            parts[k] = np.sort(np.concatenate([parts[k], moved]))
            sizes[donor] -= count
            sizes[k] += count
    return parts


@PARTITIONERS.register("dirichlet")
def dirichlet_partition(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_size: int = 0,
) -> list[np.ndarray]:
    """Per-sample Dirichlet (``alpha``); with ``min_size > 0`` then :func:`enforce_min_size`."""
    if min_size * num_clients > len(labels):
        raise ConfigError(
            f"{KEY}.min_size",
            f"num_clients * min_size = {num_clients} * {min_size} exceeds the "
            f"{len(labels)} training samples",
        )
    parts = group_by_client(dirichlet_owners(labels, num_clients, alpha, rng), num_clients)
    if min_size > 0:
        parts = enforce_min_size(parts, min_size, rng)
    return parts


@PARTITIONERS.register("shard")
def shard_partition(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, classes_per_client: int = 2
) -> list[np.ndarray]:
    """Pathological non-IID (McMahan et al. 2017): sort by label, cut into
    ``num_clients * classes_per_client`` equal shards, give each client
    ``classes_per_client`` random shards (so at most that many classes, more rarely when a
    shard straddles a class boundary)."""
    num_shards = num_clients * classes_per_client
    if num_shards > len(labels):
        raise ConfigError(
            f"{KEY}.classes_per_client",
            f"num_clients * classes_per_client = {num_shards} shards exceeds the "
            f"{len(labels)} training samples",
        )
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(np.asarray(labels)[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_shards)
    shard_order = rng.permutation(num_shards).reshape(num_clients, classes_per_client)
    return [np.sort(np.concatenate([shards[s] for s in row])) for row in shard_order]


NPY_FORM = (
    "expected a flat 1-D integer array holding the client id of every training sample "
    "(per-client index lists of different lengths go in a JSON file)"
)


def _load_npy_partition(path: Path) -> np.ndarray:
    """A flat per-sample client-id array from ``path``; never unpickles (``allow_pickle``
    stays False, so an object array in the file is refused, not executed)."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise PartitionError(
                f"{path}: holds pickled Python objects, which fedlt does not load (a pickle "
                f"can run code); {NPY_FORM}"
            ) from exc
        raise PartitionError(f"{path}: cannot read NPY partition ({exc}); {NPY_FORM}") from exc
    except (OSError, EOFError) as exc:
        raise PartitionError(f"{path}: cannot read NPY partition ({exc}); {NPY_FORM}") from exc
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind not in "iu":
        shape = getattr(array, "shape", "?")
        raise PartitionError(f"{path}: {NPY_FORM}; got {getattr(array, 'dtype', '?')} {shape}")
    return array


def _load_partition_file(path: Path) -> Any:
    """Read a JSON or NPY partition file (see :func:`file_partition`). A JSON file is the
    ``partition.json`` of ``fedlt run`` or ``fedlt partition`` (one schema,
    :mod:`fedlt.partition_file`), a mapping client id -> indices or a list of index lists;
    any other shape is refused with a message listing these."""
    from fedlt.partition_file import EXPECTED, check_partition_json

    if not path.is_file():
        raise ConfigError(f"{KEY}.path", f"partition file not found: {path}")
    if path.suffix == ".npy":
        return _load_npy_partition(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PartitionError(f"{path}: not valid JSON ({exc}); expected {EXPECTED}") from exc
    return check_partition_json(data, path)


@PARTITIONERS.register("file")
def file_partition(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, path: str | None = None
) -> Any:
    """Read a partition from ``path``.

    JSON: ``{"0": [indices...], "1": [...]}``, a list of index lists, or the
    ``partition.json`` written by ``fedlt partition``. NPY: a 1-D integer array giving the
    client id of every sample (read without pickle; object arrays are refused).
    """
    if not path:
        raise ConfigError(f"{KEY}.path", "required by the 'file' partitioner (a .json or .npy)")
    data = _load_partition_file(Path(path).expanduser())
    if isinstance(data, np.ndarray):
        if len(data) != len(labels):
            raise PartitionError(
                f"{path}: {len(data)} client ids for {len(labels)} training samples"
            )
        if len(data) and (data.min() < 0 or data.max() >= num_clients):
            bad = int(np.flatnonzero((data < 0) | (data >= num_clients))[0])
            raise PartitionError(
                f"{path}: sample {bad} has client id {int(data[bad])}, outside "
                f"[0, {num_clients}) (data.partition.num_clients)"
            )
        return group_by_client(data.astype(np.int64), num_clients)
    if isinstance(data, dict) and isinstance(data.get("clients"), dict):
        # The partition.json written by `fedlt partition`: indices only make sense for the
        # same long-tailed training set, so check its size.
        expected = data.get("meta", {}).get("num_train")
        if expected is not None and expected != len(labels):
            raise PartitionError(
                f"{path}: written for a training set of {expected} samples, but this "
                f"config yields {len(labels)} (same data.source, data.longtail and seed needed)"
            )
        data = data["clients"]
    return data


def _as_client_list(result: Any, name: str, num_clients: int) -> list[Any]:
    if isinstance(result, Mapping):
        parts: list[Any] = [None] * num_clients
        for key, value in result.items():
            try:
                client = int(key)
            except (TypeError, ValueError):
                raise PartitionError(
                    f"partitioner {name!r}: client key {key!r} is not an integer"
                ) from None
            if not 0 <= client < num_clients:
                raise PartitionError(
                    f"partitioner {name!r}: client {client} is outside [0, {num_clients}) "
                    f"(data.partition.num_clients = {num_clients})"
                )
            parts[client] = value
        missing = [k for k, p in enumerate(parts) if p is None]
        if missing:
            raise PartitionError(
                f"partitioner {name!r}: returned {num_clients - len(missing)} clients, expected "
                f"{num_clients} (data.partition.num_clients); client {missing[0]} is missing"
            )
        return parts
    if isinstance(result, np.ndarray) and result.dtype != object:
        raise PartitionError(
            f"partitioner {name!r}: returned one array; expected a list of index arrays "
            "(one per client) or a mapping client -> indices"
        )
    if not isinstance(result, (list, tuple, np.ndarray)):
        raise PartitionError(
            f"partitioner {name!r}: returned {type(result).__name__}; expected a list of "
            "index arrays (one per client) or a mapping client -> indices"
        )
    if len(result) != num_clients:
        raise PartitionError(
            f"partitioner {name!r}: returned {len(result)} clients, expected {num_clients} "
            "(data.partition.num_clients)"
        )
    return list(result)


def validate_partition(
    result: Any, num_samples: int, num_clients: int, name: str, allows_overlap: bool = False
) -> list[np.ndarray]:
    """Check a partitioner's result and return it as ``num_clients`` int64 arrays.

    Raises PartitionError naming ``name`` and the client / index when an entry is not an
    integer array, an index is out of ``[0, num_samples)``, or (unless ``allows_overlap``) an
    index appears twice.
    """
    parts = []
    for client, raw in enumerate(_as_client_list(result, name, num_clients)):
        array = np.asarray(raw)
        if array.size == 0:
            parts.append(np.zeros(0, dtype=np.int64))
            continue
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise PartitionError(
                f"partitioner {name!r}: client {client}: expected a 1-D list of integer "
                f"indices, got {array.dtype} with shape {array.shape}"
            )
        bad = (array < 0) | (array >= num_samples)
        if bad.any():
            raise PartitionError(
                f"partitioner {name!r}: client {client}: index {int(array[bad][0])} is out of "
                f"range [0, {num_samples})"
            )
        parts.append(array.astype(np.int64))
    if not allows_overlap and parts:
        counts = np.bincount(np.concatenate(parts), minlength=num_samples)
        if counts.max(initial=0) > 1:
            index = int(np.argmax(counts > 1))
            holders = [k for k, p in enumerate(parts) if np.any(p == index)]
            where = (
                f"clients {holders[0]} and {holders[1]}"
                if len(holders) > 1
                else f"client {holders[0]} (twice)"
            )
            raise PartitionError(
                f"partitioner {name!r}: index {index} is given to {where}; set "
                "allows_overlap = True on the partitioner if overlap is intended"
            )
    return parts


def empty_clients(parts: list[np.ndarray]) -> list[int]:
    """Ids of clients that received no sample (reported, not an error)."""
    return [k for k, p in enumerate(parts) if len(p) == 0]


def check_partitioner(cfg: PartitionConfig) -> None:
    """Config-time check of ``data.partition.name`` (and, for Flower Datasets partitioners,
    of their options): a registered name, ``package.module:callable`` or
    ``flwr_datasets:<Partitioner>`` (docs/partition.md)."""
    if is_flwr_datasets(cfg.name):
        check_flwr_partitioner(cfg)
        return
    PARTITIONERS.get(cfg.name, f"{KEY}.name")


def build_partition(
    labels: np.ndarray, cfg: PartitionConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Run the configured partitioner on ``labels`` and validate its result.

    Returns one int64 index array per client. Empty clients are logged as a warning (see
    :func:`empty_clients`).
    """
    labels = np.asarray(labels)
    if cfg.num_clients < 1:
        raise ConfigError(f"{KEY}.num_clients", f"must be >= 1, got {cfg.num_clients}")
    if cfg.num_clients > len(labels):
        raise ConfigError(
            f"{KEY}.num_clients",
            f"{cfg.num_clients} clients but only {len(labels)} training samples",
        )
    if is_flwr_datasets(cfg.name):
        fn: Partitioner = flwr_datasets_partition
        result = flwr_datasets_partition(labels, cfg, rng)
    elif cfg.name in PARTITIONERS:
        fn = PARTITIONERS.get(cfg.name, f"{KEY}.name")
        if cfg.options:
            raise ConfigError(
                f"{KEY}.options",
                f"only custom partitioners take options; {cfg.name!r} uses the fields of "
                "data.partition (alpha, min_size, classes_per_client, path)",
            )
        # One calling convention for every partitioner: fn(labels, num_clients, rng,
        # **options); a built-in one's options are the data.partition fields it names.
        accepted = inspect.signature(fn).parameters
        fields = {f: getattr(cfg, f) for f in BUILTIN_FIELDS if f in accepted}
        result = fn(labels, cfg.num_clients, rng, **fields)
    else:
        fn = PARTITIONERS.get(cfg.name, f"{KEY}.name")
        try:
            inspect.signature(fn).bind(labels, cfg.num_clients, rng, **cfg.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{KEY}.options",
                f"partitioner {cfg.name!r} cannot be called as fn(labels, num_clients, rng, "
                f"**options) with options {sorted(cfg.options)}: {exc}",
            ) from exc
        result = call_plugin(
            "partitioner", cfg.name, fn, labels, cfg.num_clients, rng, **cfg.options
        )
    parts = validate_partition(
        result,
        len(labels),
        cfg.num_clients,
        cfg.name,
        allows_overlap=bool(getattr(fn, "allows_overlap", False)),
    )
    empty = empty_clients(parts)
    if len(empty) == len(parts):
        raise PartitionError(
            f"partitioner {cfg.name!r}: every one of the {len(parts)} clients is empty; at "
            "least one client needs training samples"
        )
    if empty:
        log.warning("partition %r: %d empty client(s): %s", cfg.name, len(empty), empty[:20])
    return parts
