"""MVP formulas against hand computations, the batched GSF against per-sample autograd, and
learner-level behaviour of MVP, MVP-R, L2P and DualPrompt."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fedlt.errors import ConfigError
from fedlt.models import build_model
from strategies.continual import CONTINUAL_LEARNERS, parse_options
from strategies.continual.mvp import (
    MVP,
    MVPR,
    afs_features,
    cvpt_loss,
    gsf_ignorance,
    gsf_ignorance_reference,
    gsf_loss,
    mask_scale,
    penalised_selection,
)
from strategies.continual.prompts import cosine_distance

TINY = {"img_size": 8, "patch_size": 4, "embed_dim": 24, "depth": 5, "num_heads": 3}
NUM_CLASSES = 6


@pytest.fixture(autouse=True)
def _fixed_global_seed():
    """Inputs drawn with torch.randn in a test do not depend on the test order."""
    torch.manual_seed(0)


def factory():
    return build_model("vit_tiny_test", NUM_CLASSES, (1, 8, 8), TINY)


def make(name="mvp", seed=0, **options):
    cls = CONTINUAL_LEARNERS.get(name)
    return cls(parse_options(cls, options), factory, NUM_CLASSES, "cpu", seed)


def batch(seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (size,), generator=g)
    exposed = torch.zeros(NUM_CLASSES, dtype=torch.bool)
    exposed[:4] = True
    return x, y, exposed


# ------------------------------------------------------------------ formulas


def test_frequency_penalty_flips_the_choice():
    distance = torch.tensor([[0.2, 0.3]])
    counts = torch.tensor([2, 0])
    # plain argmin picks key 0; scores 0.2·3 = 0.6 vs 0.3·1 = 0.3 pick key 1
    assert penalised_selection(distance, counts, use_penalty=False).tolist() == [0]
    assert penalised_selection(distance, counts).tolist() == [1]
    assert penalised_selection(distance, torch.tensor([0, 0])).tolist() == [0]


def test_cvpt_loss_matches_hand_computation():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    query = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    selected = torch.tensor([0, 1])
    counts = torch.tensor([1, 0])  # m = [2, 1]
    distance = cosine_distance(query, keys)
    # D = [[0, 1], [1, 0]]; rows D[s] / m[s]: [0, 1/2] and [1, 0]
    attract = (1 + math.exp(0.5) + math.exp(1.0) + 1) / 4
    # d = [1 − cos((1,0),(1,0)), 1 − cos((1,1),(0,1))] = [0, 1 − 1/√2], divided by m[s]
    pull = (math.exp(0.0) + math.exp(1 - 1 / math.sqrt(2))) / 2
    expected = -math.log(attract / (pull + attract) + 1e-6)
    got = cvpt_loss(distance, keys, selected, counts)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_gsf_ignorance_hand_example():
    # W = 0, b = 0 => p = 1/2 for both classes; f0 = e1, f1 = e2, labels both 0
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = torch.zeros(2, 2)
    scale = torch.ones(2, 2)
    # g_0 = −½·e1, g_1 = −½·e2, ḡ_0 = ½(−½e1 − ½e2): cos = 1/√2 for both
    ign = gsf_ignorance(features, logits, scale, torch.tensor([0, 0]))
    assert torch.allclose(ign, torch.full((2,), 1 - 1 / math.sqrt(2)), atol=1e-6)
    # labels [0, 1]: ḡ_0 = ½(−½e1 + ½e2), g_0 = −½e1 -> cos = 1/√2; symmetric for sample 1
    ign = gsf_ignorance(features, logits, scale, torch.tensor([0, 1]))
    assert torch.allclose(ign, torch.full((2,), 1 - 1 / math.sqrt(2)), atol=1e-6)
    # a sample alone in its class with the batch gradient equal to its own: ign = 0
    ign = gsf_ignorance(features[:1], logits[:1], scale[:1], torch.tensor([0]))
    assert ign.item() == pytest.approx(0.0, abs=1e-6)


def test_gsf_loss_reductions_match_hand_values():
    ce = torch.tensor([1.0, 3.0])
    ign = torch.tensor([0.5, 1.0])
    alpha, gamma = 0.5, 2.0
    # batch: mean(CE)·[(1−α) + α·mean(ign²)] = 2·(0.5 + 0.5·0.625)
    assert gsf_loss(ce, ign, alpha, gamma, "batch").item() == pytest.approx(2 * 0.8125)
    # sample: mean([(1−α) + α·ign²]·CE) = ((0.5 + 0.125)·1 + (0.5 + 0.5)·3) / 2
    assert gsf_loss(ce, ign, alpha, gamma, "sample").item() == pytest.approx((0.625 + 3) / 2)
    with pytest.raises(ValueError):
        gsf_loss(ce, ign, alpha, gamma, "mean")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_gsf_equals_per_sample_autograd(seed):
    g = torch.Generator().manual_seed(seed)
    batch_size, classes, dim = 12, 7, 9
    head = nn.Linear(dim, classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(classes, dim, generator=g))
        head.bias.copy_(torch.randn(classes, generator=g))
    features = torch.randn(batch_size, dim, generator=g)
    mask = torch.randn(4, classes, generator=g)
    selected = torch.randint(0, 4, (batch_size,), generator=g)
    scale = mask_scale(mask, selected)
    exposed = torch.tensor([True, True, True, True, True, False, False])
    labels = torch.randint(0, 5, (batch_size,), generator=g)
    logits = (head(features) * scale).masked_fill(~exposed, float("-inf"))
    fast = gsf_ignorance(features, logits, scale, labels)
    slow = gsf_ignorance_reference(features, head, scale, exposed, labels)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert fast.std() > 0  # not a degenerate constant


def test_afs_scale_and_gradient_path():
    features = torch.tensor([[3.0, 4.0]], requires_grad=True)
    weight = torch.tensor([[1.0, 0.0]], requires_grad=True)
    out = afs_features(features, weight, torch.tensor([0]), margin=0.5)
    # cos = 0.6 -> divisor 1 − 0.6 + 0.5 = 0.9
    assert torch.allclose(out, torch.tensor([[3.0, 4.0]]) / 0.9)
    out.sum().backward()
    assert torch.allclose(features.grad, torch.full((1, 2), 1 / 0.9))  # numerator only
    assert weight.grad is None  # W detached in the scale


# ------------------------------------------------------------------ learners


def test_mvp_shapes_masks_and_initial_logit_scale():
    learner = make()
    assert isinstance(learner, MVP)
    assert learner.g_prompt.shape == (2, 5, 24)
    assert learner.e_prompt.shape == (10, 3, 20, 24)
    assert learner.keys.shape == (10, 24)
    assert learner.mask.shape == (10, NUM_CLASSES)
    assert torch.all(learner.mask == -1.0)
    x, _, exposed = batch()
    learner.eval()
    logits = learner(x, exposed)
    assert logits.shape == (8, NUM_CLASSES)
    assert torch.isinf(logits[:, ~exposed]).all()
    assert torch.isfinite(logits[:, exposed]).all()
    # at init every logit is (W f + b)·2σ(−1)
    tokens = learner.backbone.tokens(x)
    _, selected = learner._select(tokens)
    raw = learner.head(learner._features(tokens, selected))
    factor = 2 * torch.sigmoid(torch.tensor(-1.0))
    assert factor.item() == pytest.approx(0.5378828, abs=1e-6)
    assert torch.allclose(logits[:, exposed], raw[:, exposed] * factor, atol=1e-6)


def test_trainable_parameter_count_matches_spec():
    """≈554k trainable parameters for D = 768, C = 100 (spec §3)."""
    options = {"img_size": 16, "patch_size": 16, "embed_dim": 768, "depth": 5, "num_heads": 12}
    learner = MVP(
        parse_options(MVP, {}),
        lambda: build_model("vit_tiny_test", 100, (3, 16, 16), options),
        100,
    )
    # head 768·100 + 100, mask 10·100, keys 10·768, G 2·5·768, E 10·3·20·768
    assert learner.num_trainable() == 76_900 + 1_000 + 7_680 + 7_680 + 460_800 == 554_060


def test_counts_update_in_training_only_and_penalty_applies_at_test():
    learner = make()
    x, y, exposed = batch()
    learner.eval()
    learner(x, exposed)
    assert learner.counts.sum() == 0
    learner.train()
    learner.train_step(x, y, exposed)
    assert learner.counts.sum() == 8
    # at test the penalised score is used: with huge counts on every key but one, it wins
    with torch.no_grad():
        learner.counts.fill_(10**6)
        learner.counts[7] = 0
    _, selected = learner._select(learner.backbone.tokens(x))
    assert selected.tolist() == [7] * 8


def test_afs_changes_the_loss_but_not_the_predictions():
    with_afs, without = make(use_afs=True), make(use_afs=False)
    x, y, exposed = batch()
    with_afs.eval()
    without.eval()
    assert torch.equal(with_afs(x, exposed), without(x, exposed))
    a, b = with_afs.train_step(x, y, exposed), without.train_step(x, y, exposed)
    assert a["loss_cls"] != pytest.approx(b["loss_cls"], rel=1e-4)


def test_gsf_reduction_option_changes_the_loss_and_is_checked():
    batch_red, sample_red = make(gsf_reduction="batch"), make(gsf_reduction="sample")
    x, y, exposed = batch()
    a, b = batch_red.train_step(x, y, exposed), sample_red.train_step(x, y, exposed)
    assert a["loss_cls"] != pytest.approx(b["loss_cls"], rel=1e-6)
    with pytest.raises(ConfigError) as info:
        parse_options(MVP, {"gsf_reduction": "mean"})
    assert info.value.key == "strategy.options.gsf_reduction"


def test_mvp_trains_head_prompts_keys_and_mask():
    learner = make()
    before = {k: v.clone() for k, v in learner.named_parameters() if v.requires_grad}
    for step in range(2):
        learner.train_step(*batch(step))
    for name in ("head.weight", "g_prompt", "e_prompt", "keys", "mask"):
        assert not torch.equal(before[name], dict(learner.named_parameters())[name]), name


def test_mvp_r_uses_memory_and_mvp_does_not():
    assert MVPR.uses_memory and not MVP.uses_memory
    assert isinstance(make("mvp_r"), MVP)


@pytest.mark.parametrize("name", ["l2p", "dualprompt"])
def test_keys_train(name):
    learner = make(name)
    keys = learner.keys.detach().clone()
    learner.train_step(*batch())
    assert not torch.allclose(keys, learner.keys.detach())
    frozen_keys = make(name, pull_weight=0.0)
    keys = frozen_keys.keys.detach().clone()
    frozen_keys.train_step(*batch())
    assert torch.equal(keys, frozen_keys.keys.detach())  # the key loss is what trains them


def test_l2p_prompt_selection_and_shapes():
    learner = make("l2p")
    assert learner.prompts.shape == (10, 5, 24)
    x, _, exposed = batch()
    learner.eval()
    logits = learner(x, exposed)
    assert logits.shape == (8, NUM_CLASSES)
    assert torch.isinf(logits[:, ~exposed]).all()
    with pytest.raises(ConfigError) as info:
        parse_options(CONTINUAL_LEARNERS.get("l2p"), {"top_k": 11})
    assert info.value.key == "strategy.options.top_k"


def test_dualprompt_shapes():
    learner = make("dualprompt")
    assert learner.g_prompt.shape == (2, 5, 24)
    assert learner.e_prompt.shape == (10, 3, 20, 24)
    x, _, exposed = batch()
    assert learner(x, exposed).shape == (8, NUM_CLASSES)


def test_dualprompt_prefix_tuning_trains_prompts_and_keys():
    learner = make("dualprompt", attachment="prefix", e_prompt_length=5)
    assert learner.g_prompt.shape == (2, 2, 5, 24)  # layers, key/value, length, dim
    assert learner.e_prompt.shape == (10, 3, 2, 5, 24)
    before = {k: v.detach().clone() for k, v in learner.named_parameters() if v.requires_grad}
    learner.train_step(*batch())
    for name in ("g_prompt", "e_prompt", "keys", "head.weight"):
        assert not torch.equal(before[name], dict(learner.named_parameters())[name]), name
    x, _, exposed = batch(1)
    prompt_logits = make("dualprompt", e_prompt_length=5)(x, exposed)
    prefix_logits = make("dualprompt", attachment="prefix", e_prompt_length=5)(x, exposed)
    assert prefix_logits.shape == prompt_logits.shape == (8, NUM_CLASSES)
