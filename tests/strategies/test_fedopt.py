"""FedAvgM, FedAdam, FedYogi (Reddi et al., ICLR 2021, Algorithm 2) against hand-computed
values, the server state's life (checkpointed, resumed, never sent), and weighting."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from fedlt.config import load_config
from fedlt.runner import run_experiment
from strategies.federated import FEDERATED_STRATEGIES
from strategies.federated.base import LocalResult, parse_options

X0 = 1.0
ROUNDS = [  # (client values, client sizes) per round, one scalar parameter
    ([1.5, 2.5], [1, 3]),
    ([0.5, 0.25], [2, 2]),
]


def _strategy(name: str, **options):
    cls = FEDERATED_STRATEGIES.get(name, "strategy.name")
    opts = parse_options(cls, options)
    return cls(opts, lambda: torch.nn.Linear(1, 1), 2, "cpu", 0)


def _run_rounds(name: str, **options) -> list[float]:
    strategy = _strategy(name, **options)
    x = {"w": torch.tensor([X0]), "steps": torch.tensor(7)}
    server = strategy.init_server_state()
    out = []
    for values, sizes in ROUNDS:
        agg = strategy.start_aggregation(x, server)
        for v, n in zip(values, sizes, strict=True):
            agg.add(LocalResult({"w": torch.tensor([v]), "steps": torch.tensor(9)}, n))
        x, server = agg.result(), agg.server_state
        assert int(x["steps"]) == 9  # integer buffers take the averaged (first) value
        out.append(float(x["w"]))
    return out


def _deltas(uniform: bool) -> list:
    """Δ_t as a function of the current x, by hand, one per round."""

    def delta(x: float, values: list[float], sizes: list[int]) -> float:
        weights = [1] * len(values) if uniform else sizes
        return sum(w * (v - x) for v, w in zip(values, weights, strict=True)) / sum(weights)

    return [lambda x, vs=vs, ns=ns: delta(x, vs, ns) for vs, ns in ROUNDS]


def test_fedavgm_by_hand():
    eta, beta = 0.5, 0.8
    x, m, expected = X0, 0.0, []
    for delta in _deltas(uniform=True):
        m = beta * m + delta(x)
        x = x + eta * m
        expected.append(x)
    got = _run_rounds("fedavgm", server_lr=eta, momentum=beta)
    assert got == pytest.approx(expected, abs=1e-6)


def test_fedavgm_with_no_momentum_and_unit_lr_is_fedavg():
    got = _run_rounds("fedavgm", server_lr=1.0, momentum=0.0, weighting="examples")
    fedavg = _strategy("fedavg")
    x = {"w": torch.tensor([X0]), "steps": torch.tensor(7)}
    for values, sizes in ROUNDS:
        results = [
            LocalResult({"w": torch.tensor([v]), "steps": torch.tensor(9)}, n)
            for v, n in zip(values, sizes, strict=True)
        ]
        x = fedavg.aggregate(x, results)
    assert got[-1] == pytest.approx(float(x["w"]), abs=1e-7)


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_adaptive_server_optimizers_by_hand(name):
    eta, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    x, m, v, expected = X0, 0.0, tau**2, []
    for delta in _deltas(uniform=False):
        d = delta(x)
        m = b1 * m + (1 - b1) * d
        if name == "fedadam":
            v = b2 * v + (1 - b2) * d * d
        else:
            v = v - (1 - b2) * d * d * math.copysign(1.0, v - d * d)
        x = x + eta * m / (math.sqrt(v) + tau)
        expected.append(x)
    got = _run_rounds(name, server_lr=eta, beta1=b1, beta2=b2, tau=tau, weighting="examples")
    assert got == pytest.approx(expected, abs=1e-6)
    assert got != pytest.approx(_run_rounds(name, server_lr=eta), abs=1e-6)  # uniform differs


def test_bad_server_options_name_their_key():
    from fedlt.errors import ConfigError

    with pytest.raises(ConfigError, match=r"strategy\.options\.beta2"):
        parse_options(FEDERATED_STRATEGIES.get("fedadam", "strategy.name"), {"beta2": 1.0})
    with pytest.raises(ConfigError, match=r"strategy\.options\.server_lr"):
        parse_options(FEDERATED_STRATEGIES.get("fedavgm", "strategy.name"), {"server_lr": 0})


TINY = [
    "name=tiny",
    "data.partition.num_clients=4",
    "federated.rounds=5",
    "federated.checkpoint_every=2",
    "strategy.name=fedadam",
    "strategy.options.server_lr=0.05",
    "logging.progress=false",
    "resources.device=cpu",
]


def test_server_state_survives_sigkill_and_resume_exactly(tmp_path):
    cfg = load_config(None, [*TINY, f"output_dir={tmp_path / 'runs'}"])
    reference = run_experiment(cfg, run_dir=tmp_path / "ref", backend="inprocess", progress=False)
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text(cfg.to_yaml())
    killed = tmp_path / "killed"
    env = {**os.environ, "FEDLT_FAULT_KILL_AT_ROUND": "3"}
    cmd = [sys.executable, "-m", "fedlt.cli", "run", str(config_file), "--backend", "inprocess"]
    proc = subprocess.run([*cmd, "--run-dir", str(killed), "--no-progress"], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    checkpoint = torch.load(killed / "checkpoints" / "step-2.pt", weights_only=True)
    assert any(k.startswith("v.") for k in checkpoint["state"]["server_state"])  # moments saved
    run_experiment(resume=killed, backend="inprocess", progress=False)
    ref = (reference / "metrics.jsonl").read_bytes()
    assert (killed / "metrics.jsonl").read_bytes() == ref
    rounds = [json.loads(x)["round"] for x in ref.splitlines()]
    assert rounds == [1, 2, 3, 4, 5]
