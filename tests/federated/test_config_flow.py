"""The config flows once: resolved to objects once, engines take the object, no YAML parsed
again in the driver process (docs/api.md, docs/federated.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import fedlt.config
import fedlt.federated.runtime as runtime_module
import fedlt.runs
from fedlt.config import apply_overrides, load_config, override_pairs, resolve
from fedlt.configtools import to_dict
from fedlt.federated.runtime import config_key, config_text, get_runtime, runtime_for
from fedlt.runner import run_experiment


def _counting(calls: Counter, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return function(*args, **kwargs)

    return counted


@pytest.fixture
def parse_calls(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts every YAML parse and every config resolution, wherever they are imported."""
    calls: Counter = Counter()
    monkeypatch.setattr(yaml, "safe_load", _counting(calls, "yaml.safe_load", yaml.safe_load))
    text_loader = fedlt.config.load_yaml_text
    resolver = fedlt.config.resolve
    for module in (fedlt.config, runtime_module, fedlt.runs):
        if hasattr(module, "load_yaml_text"):
            monkeypatch.setattr(module, "load_yaml_text", _counting(calls, "text", text_loader))
        if hasattr(module, "resolve"):
            monkeypatch.setattr(module, "resolve", _counting(calls, "resolve", resolver))
    return calls


def test_inprocess_run_parses_no_yaml_after_the_config_is_loaded(
    tiny_config: Callable[..., Any], parse_calls: Counter
) -> None:
    cfg = tiny_config("federated.rounds=2", "name=flow")
    parse_calls.clear()
    path = run_experiment(cfg, backend="inprocess", progress=False)
    assert (path / "summary.json").is_file()
    assert parse_calls == Counter(), f"the driver parsed its config again: {dict(parse_calls)}"


def test_driver_and_worker_share_one_runtime_key(tiny_config: Callable[..., Any]) -> None:
    cfg = tiny_config("name=shared-key")
    runtime = runtime_for(cfg)
    text = config_text(cfg)
    assert get_runtime(text) is runtime  # a worker's lookup by text finds the driver's build
    assert config_key(text) == config_key(resolve(yaml.safe_load(text)).to_yaml())


def test_strategy_options_are_parsed_once_and_kept_typed() -> None:
    cfg = load_config(None, ["strategy.name=fedprox", "strategy.options.mu=0.25"])
    typed = cfg.strategy.typed_options
    assert typed is not None and typed.mu == 0.25
    assert "_typed" not in to_dict(cfg)["strategy"]  # the plain form stays the YAML's
    assert resolve(cfg.to_dict()) == cfg
    cfg.strategy.options["mu"] = 0.5  # changed after resolution: no stale object is returned
    assert cfg.strategy.typed_options is None


def test_overrides_are_path_value_pairs_with_text_parsed_at_the_edge() -> None:
    pairs = override_pairs(["data.partition.alpha=0.1", (["strategy", "options"], {"mu": 1})])
    assert pairs == [(["data", "partition", "alpha"], 0.1), (["strategy", "options"], {"mu": 1})]
    value = {"mu": [1, 2]}
    raw = apply_overrides({}, [(["strategy", "options"], value)])
    assert raw == {"strategy": {"options": {"mu": [1, 2]}}}
    assert raw["strategy"]["options"] is not value  # set as a copy
    # a string value in a pair is kept as the string, never re-read as YAML
    assert apply_overrides({}, [(["name"], "123")]) == {"name": "123"}


def test_sweep_values_reach_the_config_without_a_text_round_trip(tmp_path: Path) -> None:
    from fedlt.sweep import load_sweep

    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "set": {"name": "ignored", "logging.verbose": True},
                "grid": {"data.partition.alpha": [0.5]},
                "runs": [{"label": "x", "data.options": {"test_fraction": 0.25}}],
            }
        )
    )
    (run,) = load_sweep(sweep, tmp_path / "out").runs
    assert (["data", "options"], {"test_fraction": 0.25}) in run.overrides
    assert run.config.data.options == {"test_fraction": 0.25}
    assert run.config.logging.verbose is True and run.config.name == "x_alpha=0.5"
