"""Config loading: defaults, overrides, and errors that name the key path."""

from __future__ import annotations

import pytest
import yaml

from fedlt.config import apply_overrides, load_config, resolve
from fedlt.errors import ConfigError


def test_default_config_loads_and_round_trips():
    cfg = load_config()
    assert cfg.data.source == "digits"
    again = resolve(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_override_sets_nested_value_with_yaml_types():
    cfg = load_config(
        None, ["data.partition.alpha=0.1", "federated.rounds=3", "logging.progress=false"]
    )
    assert cfg.data.partition.alpha == 0.1
    assert cfg.federated.rounds == 3
    assert cfg.logging.progress is False


def test_override_creates_missing_mapping():
    raw = apply_overrides({}, ["strategy.options.mu=0.5"])
    assert raw == {"strategy": {"options": {"mu": 0.5}}}


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("data.partiton.alpha=1", "data.partiton", "did you mean 'partition'"),
        ("data.partition.alpha=0", "data.partition.alpha", "must be > 0"),
        ("data.partition.alpha=-1", "data.partition.alpha", "must be > 0"),
        ("data.partition.num_clients=0", "data.partition.num_clients", "must be >= 1"),
        ("data.longtail.imbalance_factor=0.5", "data.longtail.imbalance_factor", "must be >= 1"),
        ("federated.rounds=abc", "federated.rounds", "expected an integer"),
        ("federated.participation=1.5", "federated.participation", "(0, 1]"),
        ("engine=federate", "engine", "did you mean 'federated'"),
        ("data.source=cifar11", "data.source", "known: "),
        ("data.partition.name=dirichlett", "data.partition.name", "did you mean 'dirichlet'"),
        ("strategy.name=fedavgg", "strategy.name", "did you mean 'fedavg'"),
        ("strategy.name=fedprox", None, None),
        ("model.name=resnet9", "model.name", "known: "),
        ("logging.progress=maybe", "logging.progress", "true or false"),
        ("federated.lr=.inf", "federated.lr", "must be a finite number, got inf"),
        ("federated.lr=-.inf", "federated.lr", "finite"),
        ("federated.lr=.nan", "federated.lr", "finite"),
        ("federated.lr=1e999", "federated.lr", "finite"),
        ("federated.lr=0", "federated.lr", "must lie in (0, 10]"),
        ("federated.lr=11", "federated.lr", "must lie in (0, 10]"),
        ("federated.momentum=1", "federated.momentum", "must lie in [0, 1)"),
        ("federated.momentum=-0.1", "federated.momentum", "must lie in [0, 1)"),
        ("federated.weight_decay=-1e-9", "federated.weight_decay", "must be >= 0"),
        ("federated.eval_batch_size=0", "federated.eval_batch_size", "must be >= 1"),
        ("federated.round_timeout=0", "federated.round_timeout", "must be > 0"),
        ("federated.max_failure_fraction=1.5", "federated.max_failure_fraction", "[0, 1]"),
        ("federated.fail_clients=[[0, 1]]", "federated.fail_clients[0][0]", ">= 1"),
        ("federated.rounds=1000000000000000000000", "federated.rounds", "64-bit integer"),
        ("seed=-1", "seed", "[0, 2**63)"),
        ("seed=9223372036854775808", "seed", "64-bit integer"),
        ("seed=9223372036854775807", None, None),
        ("stream.seed=-1", "stream.seed", "[0, 2**63)"),
        ("data.partition.alpha=.inf", "data.partition.alpha", "finite"),
        ("data.longtail.imbalance_factor=.inf", "data.longtail.imbalance_factor", "finite"),
        ("data.longtail.imbalance_factor=1e300", None, None),
        ("resources.ray_num_cpus=0", "resources.ray_num_cpus", "must be >= 1"),
        ("resources.num_cpus=.nan", "resources.num_cpus", "finite"),
        ("name=../x", "name", "single folder name"),
        ("name=a\\b", "name", "single folder name"),
        ('name="a\\nb"', "name", "contains '\\n'"),
        ("name=.", "name", "single folder name"),
        ("name=''", "name", "empty"),
        ("name=ok-name_1.2", None, None),
    ],
)
def test_bad_values_name_their_key(override, key, fragment):
    if key is None:
        load_config(None, [override])
        return
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert info.value.key == key
    assert fragment in str(info.value)


def test_strategy_options_are_checked_against_the_strategy():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["strategy.name=fedprox", "strategy.options.muu=0.1"])
    assert info.value.key == "strategy.options.muu"
    assert "did you mean 'mu'" in str(info.value)
    with pytest.raises(ConfigError, match=r"strategy\.options\.mu: must be >= 0"):
        load_config(None, ["strategy.name=fedprox", "strategy.options.mu=-1"])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["federated.rounds"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(bad)


def test_duplicate_yaml_keys_name_the_key_and_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\ndata:\n  partition:\n    alpha: 1\n    alpha: 2\nname: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "data.partition.alpha"
    assert "line 5" in str(info.value) and "line 4" in str(info.value)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_config(None, ["strategy.options={a: 1, a: 2}"])


def test_yaml_merge_keys_are_not_duplicates():
    from fedlt.config import load_yaml_text

    text = "base: &b {rounds: 2, lr: 0.1}\nfederated:\n  <<: *b\n  lr: 0.2\n"
    assert load_yaml_text(text)["federated"] == {"rounds": 2, "lr": 0.2}
