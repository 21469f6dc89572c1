"""The sweep file read into a typed SweepSpec: every error names the key and the sweep file
(docs/sweeps.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fedlt.errors import ConfigError
from fedlt.sweep import SweepResources, SweepRun, load_sweep, read_sweep_spec


def _write(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_sweep_file_becomes_a_typed_spec(tmp_path: Path) -> None:
    spec = read_sweep_spec(
        _write(
            tmp_path,
            {
                "name": "s",
                "seeds": 3,
                "grid": {"data.partition.alpha": [0.5, 1.0]},
                "runs": [
                    {"label": "prox", "strategy.name": "fedprox", "resources": {"num_gpus": 1}}
                ],
                "resources": {"num_cpus": 2},
            },
        )
    )
    assert spec.name == "s" and spec.seed_list == [3]
    assert spec.runs == [
        SweepRun("prox", {"strategy.name": "fedprox"}, SweepResources(num_gpus=1.0))
    ]
    assert spec.resources.given() == {"num_cpus": 2.0}
    assert read_sweep_spec(_write(tmp_path, {})).seed_list == [0]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"name": 3}, r"^name: expected a string, got 3"),
        ({"base": 7}, r"^base: expected a file path or a mapping, got 7"),
        ({"set": [1]}, r"^set: expected a mapping of dotted keys to values, got \[1\]"),
        ({"seeds": [0, 0]}, r"^seeds: seeds repeat: \[0, 0\]"),
        ({"seeds": []}, r"^seeds: expected a non-empty list of integers, got \[\]"),
        ({"seeds": [True]}, r"^seeds: expected a non-empty list of integers"),
        ({"grid": {"federated.lr": 0.1}}, r"^grid.federated.lr: expected a list, got 0.1"),
        ({"grid": {"federated.lr": []}}, r"^grid.federated.lr: expected a non-empty list"),
        ({"runs": []}, r"^runs: expected a non-empty list of mappings"),
        ({"runs": ["x"]}, r"^runs\[0\]: expected a mapping, got 'x'"),
        ({"runs": [{"label": 4}]}, r"^runs\[0\].label: expected a string, got 4"),
        ({"runs": [{"label": "a", "resources": {"gpus": 1}}]}, r"^runs\[0\].resources.gpus"),
        ({"resources": {"num_cpus": 0}}, r"^resources.num_cpus: must be > 0, got 0"),
        ({"resources": {"num_gpus": -1}}, r"^resources.num_gpus: must be >= 0, got -1"),
        ({"output_dir": ["a"]}, r"^output_dir: expected a string, got \['a'\]"),
        ({"set": {"federated..lr": 0.1}}, r"^set.federated..lr: bad dotted key"),
    ],
)
def test_bad_sweep_files_name_the_key_and_the_file(
    tmp_path: Path, spec: dict[str, Any], match: str
) -> None:
    path = _write(tmp_path, spec)
    with pytest.raises(ConfigError, match=match) as info:
        load_sweep(path, tmp_path / "out")
    assert f"(in sweep file {path})" in str(info.value)
