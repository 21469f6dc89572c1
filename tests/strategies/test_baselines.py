"""Baselines: smoke runs on separable data, personal state handling, hand-computed terms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedlt.errors import ConfigError
from strategies.federated import FEDERATED_STRATEGIES, parse_options
from strategies.federated._common import balanced_softmax_loss
from strategies.federated.base import TrainConfig, sub_state
from strategies.federated.ditto import proximal_term

SMOKE = {
    "fedavg": {},
    "fedprox": {},
    "fedrep": {"head_epochs": 2},
    "fedbabu": {"finetune_epochs": 2},
    "fedrod": {},
    "ditto": {},
    "fedetf": {"personal_loops": 2, "adapt_epochs": 1},
    "fedloge": {"sse_steps": 300},
}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_smoke_learns_above_chance(world, name):
    strategy = world.make(name, SMOKE[name])
    global_state, states, losses = world.run(strategy, rounds=3)
    assert losses[-1] < losses[0], losses
    generic = world.generic_accuracy(strategy, global_state)
    personal = world.personal_accuracy(strategy, global_state, states)
    headline_generic = generic[strategy.generic_modes[0]]
    headline_personal = personal[strategy.personal_modes[0]]
    assert headline_generic > 0.5, generic  # chance: 0.25
    assert headline_personal > 0.5, personal


PERSONAL_KEYS = {"fedrep": "head.", "fedrod": "p_head.", "ditto": "personal.", "fedloge": "phi."}


@pytest.mark.parametrize("name", sorted(PERSONAL_KEYS))
def test_personal_state_persists_and_is_not_sent(world, name):
    options = {**SMOKE[name], **({"generic_head": "initial"} if name == "fedrep" else {})}
    strategy = world.make(name, options)
    global_state, states, _ = world.run(strategy, rounds=1)
    prefix = PERSONAL_KEYS[name]
    assert states[0] and all(k.startswith(prefix) for k in states[0])
    init = strategy.init_client_state(0)
    assert any(not torch.equal(states[0][k], init[k]) for k in init), "personal part not trained"
    # loaded, not re-initialised: with lr 0 it comes back exactly as passed in
    custom = {k: v + 0.5 if v.is_floating_point() else v for k, v in states[0].items()}
    frozen = TrainConfig(local_epochs=1, batch_size=16, lr=0.0)
    gen = torch.Generator().manual_seed(0)
    result = strategy.local_update(global_state, custom, world.clients[0], frozen, gen)
    for k, v in custom.items():
        if v.is_floating_point() and "running_" not in k:
            assert torch.equal(result.client_state[k], v), k
    # never in the update: no personal key, and no update tensor equals the personal one
    assert not any(k.startswith(prefix) for k in result.update)
    if name in ("fedrep", "fedloge", "fedrod"):
        personal_weight = result.client_state[prefix + "weight"]
        assert not any(
            v.shape == personal_weight.shape and torch.equal(v, personal_weight)
            for v in result.update.values()
        )


def test_fedrep_average_mode_keeps_the_personal_head_personal(world):
    strategy = world.make("fedrep", {"head_epochs": 1})
    global_state, states, _ = world.run(strategy, rounds=1)
    assert "head.weight" in global_state  # average of heads, for the generic number only
    gen = torch.Generator().manual_seed(0)
    frozen = TrainConfig(local_epochs=1, batch_size=16, lr=0.0)
    result = strategy.local_update(global_state, states[1], world.clients[1], frozen, gen)
    assert torch.equal(result.client_state["head.weight"], states[1]["head.weight"])
    assert not torch.equal(global_state["head.weight"], states[1]["head.weight"])


def test_fedrep_body_frozen_during_head_epochs(world):
    strategy = world.make("fedrep", {"head_epochs": 2})
    global_state = strategy.init_global_state()
    head_only = TrainConfig(local_epochs=0, batch_size=16, lr=0.1)
    result = strategy.local_update(
        global_state, {}, world.clients[0], head_only, torch.Generator().manual_seed(0)
    )
    for name, _ in strategy.model.backbone.named_parameters():
        key = "backbone." + name
        assert torch.equal(result.update[key], global_state[key]), key
    assert not torch.equal(result.client_state["head.weight"], global_state["head.weight"])


def test_fedbabu_head_bit_identical_and_global_state_untouched(world):
    strategy = world.make("fedbabu", {"finetune_epochs": 1})
    initial = strategy.init_global_state()
    global_state, _, _ = world.run(strategy, rounds=2)
    assert torch.equal(global_state["head.weight"], initial["head.weight"])
    assert torch.equal(global_state["head.bias"], initial["head.bias"])
    assert not torch.equal(global_state["backbone.1.weight"], initial["backbone.1.weight"])
    snapshot = {k: v.clone() for k, v in global_state.items()}
    predict = strategy.personal_predictor(
        global_state, {}, world.clients[0], world.train, torch.Generator().manual_seed(0)
    )
    predict(world.test.x[:4])
    assert all(torch.equal(snapshot[k], global_state[k]) for k in snapshot)
    assert not torch.equal(strategy.model.head.weight, global_state["head.weight"])  # fine-tuned
    # the working model reloads cleanly afterwards
    strategy.generic_predictor(global_state)
    assert torch.equal(strategy.model.head.weight, global_state["head.weight"])


def test_fedprox_regulariser_matches_hand_value(world):
    strategy = world.make("fedprox", {"mu": 0.3})
    strategy._anchor = [p.detach().clone() for p in strategy.model.parameters()]
    with torch.no_grad():
        for p in strategy.model.parameters():
            p.add_(0.5)
    count = sum(p.numel() for p in strategy.model.parameters())
    # (μ/2)·Σ‖w − w_g‖² with every entry shifted by 0.5: 0.15 · count · 0.25
    assert float(strategy.regulariser().detach()) == pytest.approx(
        0.5 * 0.3 * count * 0.25, rel=1e-5
    )


def test_ditto_proximal_term_matches_hand_value():
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
        layer.bias.copy_(torch.tensor([3.0]))
    anchors = [torch.tensor([[0.0, 0.0]]), torch.tensor([1.0])]
    # (λ/2)·(1² + 2² + 2²) with λ = 0.2
    assert float(proximal_term(layer, anchors, 0.2).detach()) == pytest.approx(0.1 * 9.0)


def test_ditto_personal_model_differs_from_global_update(world):
    strategy = world.make("ditto", {"lam": 0.5, "personal_epochs": 2})
    global_state, states, _ = world.run(strategy, rounds=1)
    personal = sub_state(states[0], "personal.")
    assert set(personal) == set(global_state)
    assert not torch.equal(personal["head.weight"], global_state["head.weight"])


def test_balanced_softmax_equals_hand_formula():
    z = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.0, -1.0]])
    y = torch.tensor([0, 1])
    counts = torch.tensor([6, 3, 1])
    prior = [0.6, 0.3, 0.1]
    expected = 0.0
    for row, label in zip(z.tolist(), y.tolist(), strict=True):
        weighted = [p * math.exp(v) for p, v in zip(prior, row, strict=True)]
        expected += -math.log(weighted[label] / sum(weighted)) / 2
    assert float(balanced_softmax_loss(z, y, counts)) == pytest.approx(expected, rel=1e-6)
    assert float(balanced_softmax_loss(z, y, counts)) == pytest.approx(
        float(F.cross_entropy(z + torch.tensor(prior).log(), y)), rel=1e-6
    )
    # an absent class drops out of the normaliser (log 0 = −inf), no NaN
    zero = balanced_softmax_loss(z, y, torch.tensor([6, 3, 0]))
    assert torch.isfinite(zero)
    expected_zero = F.cross_entropy(z[:, :2] + torch.tensor([2 / 3, 1 / 3]).log(), y)
    assert float(zero) == pytest.approx(float(expected_zero), rel=1e-6)


def test_fedrod_generic_loss_option(world):
    bsm = world.make("fedrod", {"generic_loss": "balanced_softmax"})
    ce = world.make("fedrod", {"generic_loss": "ce"})
    z, y, counts = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0]), torch.tensor([5, 1, 1, 1])
    assert float(ce.generic_loss(z, y, counts)) == pytest.approx(float(F.cross_entropy(z, y)))
    assert float(bsm.generic_loss(z, y, counts)) == pytest.approx(
        float(F.cross_entropy(z + (counts / 8).log(), y))
    )


def test_fedrod_personal_prediction_is_generic_plus_personal(world):
    strategy = world.make("fedrod")
    global_state, states, _ = world.run(strategy, rounds=1)
    out = strategy.personal_predictor(
        global_state, states[0], world.clients[0], world.train, torch.Generator()
    )(world.test.x[:6])
    with torch.no_grad():
        h = strategy.model.features(world.test.x[:6])
        g = h @ global_state["head.weight"].T + global_state["head.bias"]
        p = h @ states[0]["p_head.weight"].T + states[0]["p_head.bias"]
    assert torch.allclose(out["generic_head"], g, atol=1e-5)
    assert torch.allclose(out["rod"], g + p, atol=1e-5)


def test_fedetf_classifier_fixed_and_not_sent(world):
    strategy = world.make("fedetf", SMOKE["fedetf"])
    etf = strategy.etf.clone()
    global_state, _, _ = world.run(strategy, rounds=2)
    assert torch.equal(strategy.etf, etf)
    assert set(global_state) == {"temperature"} | {
        k for k in global_state if k.startswith(("backbone.", "proj."))
    }
    assert not torch.equal(global_state["temperature"], torch.tensor(1.0))  # learnable
    strategy.personal_predictor(
        global_state, {}, world.clients[0], world.train, torch.Generator().manual_seed(0)
    )
    assert torch.equal(strategy.etf, etf)  # personal fine-tuning works on a copy
    gram = etf.T @ etf
    assert torch.allclose(gram.diagonal(), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("fedrep", {"head_epochs": -1}, "head_epochs"),
        ("fedbabu", {"finetune": "body"}, "finetune"),
        ("fedrod", {"generic_loss": "bsm"}, "generic_loss"),
        ("ditto", {"lam": -0.1}, "lam"),
        ("fedetf", {"proto_lr": 0}, "proto_lr"),
    ],
)
def test_bad_options_name_their_key(name, options, key):
    with pytest.raises(ConfigError, match=rf"strategy\.options\.{key}"):
        parse_options(FEDERATED_STRATEGIES.get(name), options)
