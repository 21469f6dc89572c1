"""The one ``partition.json`` schema, written by ``fedlt run`` and ``fedlt partition``.

Both a run directory's ``partition.json`` (:meth:`fedlt.runs.RunDirectory.write_partition`)
and the one ``fedlt partition`` writes (:mod:`fedlt.data.inspect`) hold the same document,
and either can be fed back with ``data.partition: {name: file, path: .../partition.json}``
(docs/partition.md)::

    {
      "format": "fedlt-partition/1",
      "meta": {"name", "seed", "num_clients", "num_train", "classes", "data"},
      "class_counts": [training images per class],
      "client_test_sizes": [local test images per client],
      "empty_clients": [clients without training data],
      "client_class_counts": [[training images per class] per client],
      "source_indices": [index in the source's training split of each long-tailed sample],
      "clients": {"0": [indices into the long-tailed training set], "1": [...], ...}
    }

The text is deterministic (sorted ``meta``, one client per line), so two builds of the same
config give byte-identical files. Nothing here imports torch, Flower or Ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedlt.configtools import to_dict
from fedlt.errors import PartitionError

if TYPE_CHECKING:
    from fedlt.config import ExperimentConfig
    from fedlt.data.federated import FederatedData

FORMAT = "fedlt-partition/1"
EXPECTED = (
    'the partition.json of `fedlt run` or `fedlt partition` ({"meta": ..., "clients": '
    '{"0": [indices], ...}}), {"0": [indices], ...} or a list of index lists'
)


def partition_document(cfg: ExperimentConfig, data: FederatedData) -> dict[str, Any]:
    """The ``partition.json`` document of a built federated dataset (module docstring)."""
    meta = {
        "name": cfg.name,
        "seed": cfg.seed,
        "num_clients": data.num_clients,
        "num_train": len(data.train),
        "classes": list(data.train.classes),
        "data": to_dict(cfg.data),
    }
    return {
        "format": FORMAT,
        "meta": meta,
        "class_counts": [int(v) for v in data.class_counts],
        "client_test_sizes": [len(i) for i in data.client_test_indices],
        "empty_clients": [int(k) for k in data.empty_clients],
        "client_class_counts": [[int(v) for v in row] for row in data.client_class_counts],
        "source_indices": [int(i) for i in data.source_indices],
        "clients": {str(k): [int(i) for i in part] for k, part in enumerate(data.client_indices)},
    }


def partition_text(document: dict[str, Any]) -> str:
    """Deterministic text of a ``partition.json`` document: sorted ``meta``, one line per
    client in ``client_class_counts`` and ``clients``."""
    lines = ["{"]
    for key in ("format", "meta", "class_counts", "client_test_sizes", "empty_clients"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(document[key], sort_keys=True)},")
    rows = [json.dumps(row) for row in document["client_class_counts"]]
    lines.append(_block("client_class_counts", rows, "[]", ","))
    lines.append(f'  "source_indices": {json.dumps(document["source_indices"])},')
    clients = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in document["clients"].items()]
    lines.append(_block("clients", clients, "{}", ""))
    lines += ["}", ""]
    return "\n".join(lines)


def _block(key: str, entries: list[str], brackets: str, comma: str) -> str:
    """``"key": [`` (or ``{``), one entry per line, the closing bracket and ``comma``."""
    open_, close = brackets
    if not entries:
        return f"  {json.dumps(key)}: {brackets}{comma}"
    body = ",\n".join(f"    {entry}" for entry in entries)
    return f"  {json.dumps(key)}: {open_}\n{body}\n  {close}{comma}"


def check_partition_json(data: Any, path: Path) -> Any:
    """``data`` (a parsed partition file) when it has one of the accepted shapes; a
    PartitionError naming ``path`` and the shapes otherwise."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise PartitionError(f"{path}: a JSON {type(data).__name__}; expected {EXPECTED}")
    if "clients" in data:
        if not isinstance(data["clients"], dict):
            raise PartitionError(f"{path}: 'clients' is not a mapping; expected {EXPECTED}")
        return data
    stray = next((k for k in data if not str(k).isdigit()), None)
    if stray is not None:
        raise PartitionError(
            f"{path}: key {stray!r} is not a client id and there is no 'clients' mapping; "
            f"expected {EXPECTED}"
        )
    return data


__all__ = [
    "FORMAT",
    "check_partition_json",
    "partition_document",
    "partition_text",
]
