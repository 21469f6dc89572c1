"""The federated continual engine in process: methods, evaluation, edge cases, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fedlt.errors import ConfigError
from fedlt.federated_continual.engine import FederatedContinualEngine
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory

VIT = [
    "model.name=vit_tiny_test",
    "model.options={img_size: 16, patch_size: 4, embed_dim: 32, depth: 3, num_heads: 2}",
    "strategy.options={g_prompt_layers: [0], e_prompt_layers: [1, 2]}",
]


def _records(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def _summary(path):
    return json.loads((path / "summary.json").read_text())


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy.name=fedavg"],
        ["strategy.name=fedprox", "strategy.options={mu: 0.01}"],
        ["strategy.name=fedloge", "strategy.options={sse_steps: 50}"],
        ["strategy.name=finetune"],
        ["strategy.name=er"],
        ["strategy.name=ewcpp"],
        ["strategy.name=lwf"],
        ["strategy.name=mvp", *VIT],
    ],
    ids=lambda o: o[0].split("=")[1],
)
def test_every_method_runs_and_reports_anytime_metrics(fcl_config, overrides):
    path = run_experiment(fcl_config(*overrides), backend="inprocess", progress=False)
    summary = _summary(path)
    assert summary["engine"] == "federated_continual" and summary["status"] == "complete"
    final = summary["final"]
    for key in ("A_auc", "A_avg", "A_last", "F_last", "personal.A_auc", "personal.A_last"):
        assert math.isfinite(final[key]), key
    assert 0 < final["A_last"] <= 1
    records = _records(path)
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    assert all(r["phase_end"] for r in records if r["round"] in (1, 2, 3, 4))  # 4 rounds, 5 tasks
    for name in ("accuracy", "clients", "exposure"):
        assert (path / "figures" / f"{name}.png").stat().st_size > 0


def test_prompt_learner_shares_only_what_it_trains(fcl_config):
    from fedlt.federated.runtime import runtime_for

    strategy = runtime_for(fcl_config("strategy.name=mvp", *VIT)).strategy
    shared = set(strategy.init_global_state())
    assert shared == {"g_prompt", "e_prompt", "keys", "mask", "head.weight", "head.bias"}
    assert "learner.counts" in strategy.init_client_state(0)  # key counts stay on the client


def test_ewcpp_keeps_its_fisher_and_anchor_in_the_client_state(fcl_config, tmp_path):
    cfg = fcl_config("strategy.name=ewcpp", "stream.samples_per_round=200")
    path = run_experiment(cfg, run_dir=tmp_path / "ewc", backend="inprocess", progress=False)
    from fedlt.federated.state_store import ClientStateStore

    store = ClientStateStore(path / "client_state")
    store.restore(RunDirectory.open(path).latest_checkpoint().state["client_state_index"])
    state = store.get(0)
    fisher = [v for k, v in state.items() if k.startswith("learner_extra.fisher.")]
    assert fisher and any(float(f.abs().sum()) > 0 for f in fisher)
    assert bool(state["learner_extra.has_anchor"])  # 200 samples a round: a task has ended


def test_evaluation_uses_the_classes_exposed_to_any_client_and_to_each_client(fcl_config, tmp_path):
    cfg = fcl_config()
    run = RunDirectory.create(cfg, tmp_path / "eval")
    engine = FederatedContinualEngine(run, progress=False)
    engine.positions[:] = 0
    engine.positions[0] = 15  # only client 0 has streamed anything
    global_state = engine.strategy.init_global_state()
    record, _ = engine.evaluate(1, global_state)
    rt = engine.runtime
    exposed = engine.streams.exposed_mask(0, 15)
    assert record["num_exposed"] == int(exposed.sum())
    assert record["unexposed_classes"] == [int(c) for c in np.flatnonzero(~exposed)]
    # generic: test images of exposed classes only, unexposed logits masked
    labels = rt.data.test.labels.astype(np.int64)
    keep = np.flatnonzero(exposed[labels])
    logits = rt._logits(engine.strategy.generic_predictor(global_state), rt.t.test_u8[keep])[
        "global"
    ]
    logits[:, ~torch.from_numpy(exposed)] = float("-inf")
    expected = float((logits.argmax(1).numpy() == labels[keep]).mean())
    assert record["generic.global.top1"] == pytest.approx(expected)
    # personal: only client 0 is evaluated, on its own exposed classes
    streams = record["client_streams"]
    assert streams["0"]["exposed"] == int(exposed.sum())
    assert streams["1"]["acc"] is None and streams["1"]["exposed"] == 0
    assert record["personal.global.top1_mean"] == pytest.approx(streams["0"]["acc"])
    run.release_lock()


def test_a_short_stream_leaves_the_sampling_and_the_summary_says_when(fcl_config, capsys):
    cfg = fcl_config("stream.samples_per_round=100", "federated.rounds=6")
    path = run_experiment(cfg, backend="inprocess", progress=False)
    assert "no more samples than stream.samples_per_round=100" in capsys.readouterr().err
    records = _records(path)
    summary = _summary(path)
    ended = {int(k): r for k, r in summary["streams_ended"].items()}
    final_positions = {k: v["position"] for k, v in records[-1]["client_streams"].items()}
    for k, r in ended.items():
        assert k in records[r - 1]["clients"]  # sampled in the round its stream ended ...
        assert all(k not in rec["clients"] for rec in records[r:])  # ... and never again
        assert final_positions[str(k)] == records[r - 1]["client_streams"][str(k)]["position"]
    # every client with at most 100 samples ended in round 1
    assert [k for k, r in ended.items() if r == 1]


def test_run_ends_early_when_every_stream_has_ended(fcl_config, capsys):
    cfg = fcl_config("stream.samples_per_round=400", "federated.rounds=5")
    path = run_experiment(cfg, backend="inprocess", progress=False)
    assert "every client's stream ended by round" in capsys.readouterr().err
    summary = _summary(path)
    assert summary["rounds_run"] < 5
    assert summary["samples_seen"] == summary["samples"]
    assert RunDirectory.open(path).is_complete
    last = _records(path)[-1]
    assert last["round"] == summary["rounds_run"] and last["phase_end"]


def test_sigkill_then_resume_gives_byte_identical_metrics(fcl_config, tmp_path, killed_run):
    cfg = fcl_config("strategy.name=er", "federated.rounds=5", "stream.samples_per_round=16")
    reference = run_experiment(cfg, run_dir=tmp_path / "ref", backend="inprocess", progress=False)
    killed = killed_run(cfg, 3)
    run_experiment(resume=killed, backend="inprocess", progress=False)
    assert (killed / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()
    assert _summary(killed)["final"] == _summary(reference)["final"]


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("federated.local_epochs=2", "federated.local_epochs", "online"),
        ("strategy.name=fedrep", "strategy.name", "cannot train on online streams"),
        ("strategy.name=fedavgg", "strategy.name", "did you mean"),
        ("stream.samples_per_round=0", "stream.samples_per_round", ">= 1"),
        ("stream.task_sync=both", "stream.task_sync", "shared"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(fcl_config, override, key, words):
    with pytest.raises(ConfigError) as info:
        fcl_config(override)
    assert key in str(info.value) and words in str(info.value)
