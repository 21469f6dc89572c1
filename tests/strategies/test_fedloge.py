"""FedLoGe: SSE-C handling, the three-optimizer round, aggregation, GLA-FR, personal heads."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from fedlt.errors import ConfigError
from strategies.federated import FEDERATED_STRATEGIES, parse_options
from strategies.federated.base import LocalResult, sub_state
from strategies.federated.fedloge import (
    FedLoGe,
    generic_realigned_weight,
    norm_transferred_weight,
    personal_logits,
)
from strategies.federated.sse_c import sse_c_layer

FAST = {"sse_steps": 300}


def test_sse_c_frozen_never_sent_and_identical_across_workers(world):
    strategy = world.make("fedloge", FAST)
    before = {k: v.clone() for k, v in strategy.sse_c.state_dict().items()}
    global_state, states, _ = world.run(strategy, rounds=2)
    after = strategy.sse_c.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical
    # rebuilt from the seed alone on another "worker"
    rebuilt = sse_c_layer(strategy.sse_spec, bias=True).state_dict()
    assert all(torch.equal(rebuilt[k], after[k]) for k in after)
    other_worker = world.make("fedloge", FAST)
    assert torch.equal(other_worker.sse_c.weight, strategy.sse_c.weight)
    # never in the global state, an update or a client state
    result = strategy.local_update(
        global_state, states[0], world.clients[0], world.train, torch.Generator().manual_seed(0)
    )
    backbone_keys = {"backbone." + k for k in strategy.model.backbone.state_dict()}
    assert set(result.update) == backbone_keys | {"psi.weight", "psi.bias"}
    assert set(global_state) == set(result.update)
    assert set(result.client_state) == {"phi.weight", "phi.bias"}


def test_bias_none_option(world):
    strategy = world.make("fedloge", {**FAST, "bias": "none"})
    assert strategy.sse_c.bias is None


def test_personal_head_persists_and_is_never_sent(world):
    strategy = world.make("fedloge", FAST)
    global_state, states, _ = world.run(strategy, rounds=1)
    init = strategy.init_client_state(0)
    assert not torch.equal(states[0]["phi.weight"], init["phi.weight"])  # φ_0 was trained
    assert not torch.equal(states[0]["phi.weight"], states[1]["phi.weight"])  # and is personal
    # with lr 0 the returned φ_k is exactly the one passed in: it is loaded, not re-initialised
    custom = {k: v + 0.25 for k, v in states[1].items()}
    frozen = type(world.train)(local_epochs=1, batch_size=16, lr=0.0)
    result = strategy.local_update(
        global_state, custom, world.clients[1], frozen, torch.Generator().manual_seed(0)
    )
    assert all(torch.equal(result.client_state[k], custom[k]) for k in custom)
    assert not any(k.startswith("phi.") for k in result.update)


def test_backbone_trained_by_sse_c_loss_only(world):
    """L1 = CE(SSE-C(h)) is the only gradient θ sees (ψ and φ_k use detached features)."""
    strategy = world.make("fedloge", FAST)
    global_state = strategy.init_global_state()
    data = world.clients[0]
    result = strategy.local_update(
        global_state, {}, data, world.train, torch.Generator().manual_seed(3)
    )
    reference = world.make("fedloge", FAST)
    reference.load_global(global_state)
    reference.model.train()
    backbone = reference.model.backbone
    optimizer = torch.optim.SGD(backbone.parameters(), lr=world.train.lr, momentum=0.5)
    for x, y in data.batches(world.train.batch_size, torch.Generator().manual_seed(3)):
        loss = F.cross_entropy(reference.sse_c(backbone(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    expected = backbone.state_dict()
    got = sub_state(result.update, "backbone.")
    for k, v in expected.items():
        assert torch.allclose(got[k].float(), v.float(), atol=1e-6, rtol=0), k


def test_aggregation_weighted_by_training_set_size_in_order(world):
    strategy = world.make("fedloge", FAST)
    g = strategy.init_global_state()
    a = {k: torch.full_like(v, 1.0) if v.is_floating_point() else v for k, v in g.items()}
    b = {k: torch.full_like(v, 5.0) if v.is_floating_point() else v for k, v in g.items()}
    merged = strategy.aggregate(g, [LocalResult(a, 30), LocalResult(b, 10)])
    # (30·1 + 10·5) / 40 = 2.0; a permuted-weights bug would give (10·1 + 30·5)/40 = 4.0
    assert torch.allclose(merged["psi.weight"], torch.full_like(g["psi.weight"], 2.0))
    assert torch.allclose(merged["backbone.1.weight"], torch.full_like(g["backbone.1.weight"], 2.0))


def test_gla_fr_hand_values():
    psi_w = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    psi_b = torch.tensor([0.5, -0.5])
    phi_w = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    phi_b = torch.tensor([0.1, 0.2])
    # generic: rows rescaled to norm s = 1.7: [3,4]/5·1.7, [0,1]·1.7
    expected_generic = torch.tensor([[1.02, 1.36], [0.0, 1.7]])
    assert torch.allclose(generic_realigned_weight(psi_w, 1.7), expected_generic)
    # transfer: ‖φ_0‖ = 2, ‖φ_1‖ = 1  ->  ψ̃ = [[6, 8], [0, 1]]
    assert torch.allclose(
        norm_transferred_weight(psi_w, phi_w), torch.tensor([[6.0, 8.0], [0.0, 1.0]])
    )
    h = torch.tensor([[1.0, 1.0]])
    # φh + b_φ = [2.1, 1.2];  ψ̃h + b_ψ = [14.5, 0.5]
    assert torch.allclose(
        personal_logits(h, psi_w, psi_b, phi_w, phi_b), torch.tensor([[16.6, 1.7]])
    )


def test_predictors_apply_gla_fr_to_the_backbone_features(world):
    strategy = world.make("fedloge", {**FAST, "scale": 2.5})
    global_state, states, _ = world.run(strategy, rounds=1)
    x = world.test.x[:8]
    generic = strategy.generic_predictor(global_state)(x)
    personal = strategy.personal_predictor(
        global_state, states[2], world.clients[2], world.train, torch.Generator()
    )(x)
    with torch.no_grad():
        h = strategy.model.features(x)
    psi_w, psi_b = global_state["psi.weight"], global_state["psi.bias"]
    phi_w, phi_b = states[2]["phi.weight"], states[2]["phi.bias"]
    norms = psi_w.norm(dim=1, keepdim=True)
    assert torch.allclose(generic["gla_fr"], h @ (2.5 * psi_w / norms).T + psi_b, atol=1e-5)
    assert torch.allclose(generic["psi"], h @ psi_w.T + psi_b, atol=1e-5)
    assert torch.allclose(generic["universal"], strategy.sse_c(h), atol=1e-6)
    transfer = phi_w.norm(dim=1, keepdim=True) * psi_w
    expected = h @ phi_w.T + phi_b + h @ transfer.T + psi_b
    assert torch.allclose(personal["gla_fr"], expected, atol=1e-5)
    assert torch.allclose(
        personal["local_psi_phi"], h @ (phi_w + psi_w).T + phi_b + psi_b, atol=1e-5
    )
    assert (generic["gla_fr"] - generic["psi"]).abs().max() > 1e-3  # realignment changed them


def test_learns_separable_data_above_chance(world):
    strategy = world.make("fedloge", FAST)
    global_state, states, losses = world.run(strategy, rounds=3)
    assert losses[-1] < losses[0]
    generic = world.generic_accuracy(strategy, global_state)
    personal = world.personal_accuracy(strategy, global_state, states)
    # chance is 0.25; SSE-C's 0.1-norm columns make its logits small, so it learns slowest
    assert generic["universal"] > 0.4 and generic["gla_fr"] > 0.6, generic
    assert personal["gla_fr"] > 0.6 and personal["local_psi_phi"] > 0.6, personal


def test_options_validation_names_the_key():
    cls = FEDERATED_STRATEGIES.get("fedloge")
    assert cls is FedLoGe
    with pytest.raises(ConfigError, match=r"strategy\.options\.beta"):
        parse_options(cls, {"beta": 1.5})
    with pytest.raises(ConfigError, match=r"strategy\.options\.bias"):
        parse_options(cls, {"bias": "zero"})
    defaults = parse_options(cls, {})
    assert (defaults.beta, defaults.tau, defaults.sse_steps, defaults.sse_lr, defaults.scale) == (
        0.6,
        0.1,
        10_000,
        1e-4,
        1.7,
    )
