"""MVP formulas against hand computations, the batched GSF against per-sample autograd, and
learner-level behaviour of MVP, MVP-R, L2P and DualPrompt."""

from __future__ import annotations

import math

import pytest
import timm.layers
import torch
from torch import nn

from fedlt.errors import ConfigError
from fedlt.models import build_model
from fedlt.seeding import derived_seed
from strategies.continual import CONTINUAL_LEARNERS, parse_options
from strategies.continual.mvp import (
    MVP,
    MVPR,
    MVPOptions,
    afs_features,
    classification_loss,
    cvpt_loss,
    gsf_ignorance,
    gsf_ignorance_reference,
    gsf_loss,
    mask_scale,
    penalised_selection,
)
from strategies.continual.prompts import cosine_distance, linear_head, trunc_normal_

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
    counts = torch.tensor([1, 0])  # m = [2, 1], m[s] = [2, 1]
    distance = cosine_distance(query, keys)
    # D = [[0, 1], [1, 0]]; d = [1 − cos((1,0),(1,0)), 1 − cos((1,1),(0,1))] = [0, 1 − 1/√2]
    r = 1 - 1 / math.sqrt(2)
    # own_key: rows D[s_i] / m[s_i] = [0, 1/2] and [1, 0]; d_i / m[s_i] = [0, r]
    attract = (1 + math.exp(0.5) + math.exp(1.0) + 1) / 4
    pull = (math.exp(0.0) + math.exp(r)) / 2
    own = -math.log(attract / (pull + attract) + 1e-6)
    assert cvpt_loss(distance, keys, selected, counts, "own_key").item() == pytest.approx(own)
    # all_pairs: both rows [0, 1] and [1, 0] divided by m = 2 and by m = 1 (8 terms);
    # d = [0, r] divided by m = 2 and by m = 1 (4 terms)
    attract = (4 + 2 * math.exp(0.5) + 2 * math.exp(1.0)) / 8
    pull = (2 + math.exp(r / 2) + math.exp(r)) / 4
    every = -math.log(attract / (pull + attract) + 1e-6)
    assert cvpt_loss(distance, keys, selected, counts, "all_pairs").item() == pytest.approx(every)
    assert cvpt_loss(distance, keys, selected, counts).item() == pytest.approx(every)  # default
    with pytest.raises(ValueError):
        cvpt_loss(distance, keys, selected, counts, "pairs")


def _cos(u, v):
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def cvpt_by_loops(query, keys, selected, counts, pairing):
    """L_CVPT with explicit loops over samples i, j and keys c, in double precision."""
    q, k, s = query.tolist(), keys.tolist(), selected.tolist()
    m = [n + 1 for n in counts.tolist()]
    batch, pool = len(q), len(k)
    key_dist = [[1 - _cos(k[a], k[b]) for b in range(pool)] for a in range(pool)]
    d = [1 - _cos(q[i], k[s[i]]) for i in range(batch)]
    if pairing == "all_pairs":  # sample i's distances over sample j's key count, all (i, j)
        attract = sum(
            math.exp(key_dist[s[i]][c] / m[s[j]])
            for i in range(batch)
            for j in range(batch)
            for c in range(pool)
        ) / (batch * batch * pool)
        pull = sum(math.exp(d[i] / m[s[j]]) for i in range(batch) for j in range(batch))
        pull /= batch * batch
    else:  # own_key
        attract = sum(
            math.exp(key_dist[s[i]][c] / m[s[i]]) for i in range(batch) for c in range(pool)
        ) / (batch * pool)
        pull = sum(math.exp(d[i] / m[s[i]]) for i in range(batch)) / batch
    return -math.log(attract / (pull + attract) + 1e-6)


CVPT_CASES = {
    # name: (selected, counts); B = 4 samples, P = 3 keys
    "unequal": ([0, 1, 1, 2], [0, 2, 5]),  # m[s] = [1, 3, 3, 6]
    "equal_counts": ([0, 1, 1, 2], [3, 3, 3]),
    "selected_share_count": ([0, 1, 1, 0], [2, 2, 9]),  # key 2 (other count) unused
}


@pytest.mark.parametrize("case", sorted(CVPT_CASES))
@pytest.mark.parametrize("pairing", ["all_pairs", "own_key"])
def test_cvpt_loss_matches_loop_computation(pairing, case):
    g = torch.Generator().manual_seed(3)
    keys = torch.randn(3, 6, generator=g, requires_grad=True)
    query = torch.randn(4, 6, generator=g)
    selected, counts = (torch.tensor(v) for v in CVPT_CASES[case])
    got = cvpt_loss(cosine_distance(query, keys), keys, selected, counts, pairing)
    expected = cvpt_by_loops(query, keys.detach(), selected, counts, pairing)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    got.backward()
    assert keys.grad is not None and keys.grad.abs().sum() > 0


def test_cvpt_pairings_differ_exactly_when_selected_key_counts_differ():
    g = torch.Generator().manual_seed(3)
    keys, query = torch.randn(3, 6, generator=g), torch.randn(4, 6, generator=g)
    distance = cosine_distance(query, keys)

    def both(case):
        selected, counts = (torch.tensor(v) for v in CVPT_CASES[case])
        return [
            cvpt_loss(distance, keys, selected, counts, p).item() for p in ("all_pairs", "own_key")
        ]

    every, own = both("unequal")
    assert abs(every - own) > 1e-3
    for case in ("equal_counts", "selected_share_count"):
        every, own = both(case)
        assert every == pytest.approx(own, abs=1e-6)


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


def classification_loss_by_loops(
    features, weight, bias, scale, exposed, labels, gsf_features, reduction, use_afs=True
):
    """MVP's GSF-weighted CE written out sample by sample, with one autograd call per
    sample on a copy of the head weight (α = 0.5, γ = 2, AFS margin 0.5)."""
    alpha, gamma, margin = 0.5, 2.0, 0.5
    batch = features.shape[0]
    rows = [features[i] for i in range(batch)]

    def afs(i):
        f, w = rows[i], weight[labels[i]]
        cos = float(w @ f) / (float(w.norm()) * float(f.norm()))
        return f / (1 - cos + margin)

    loss_rows = [afs(i) for i in range(batch)] if use_afs else rows

    def ce(w, f, i):
        z = (w @ f + bias) * scale[i]
        z = torch.where(exposed, z, torch.full_like(z, float("-inf")))
        return -torch.log_softmax(z, dim=0)[labels[i]]

    grad_rows = rows if gsf_features == "raw" else loss_rows
    w = weight.detach().clone().requires_grad_(True)
    g = [torch.autograd.grad(ce(w, grad_rows[i], i), w)[0][labels[i]] for i in range(batch)]
    mean_ce = sum(ce(w, grad_rows[i], i) for i in range(batch)) / batch
    (g_bar,) = torch.autograd.grad(mean_ce, w)
    ign = [1 - _cos(g[i].tolist(), g_bar[labels[i]].tolist()) for i in range(batch)]
    ces = [float(ce(weight, loss_rows[i], i)) for i in range(batch)]
    if reduction == "batch":
        return sum(ces) / batch * ((1 - alpha) + alpha * sum(v**gamma for v in ign) / batch)
    return sum(((1 - alpha) + alpha * v**gamma) * c for v, c in zip(ign, ces, strict=True)) / batch


def gsf_case(seed=0):
    """B = 4 samples, C = 5 classes (class 4 unexposed), D = 6 features, random mask scale."""
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(6, 5)
    with torch.no_grad():
        head.weight.copy_(torch.randn(5, 6, generator=g))
        head.bias.copy_(torch.randn(5, generator=g))
    features = torch.randn(4, 6, generator=g)
    scale = mask_scale(torch.randn(3, 5, generator=g), torch.tensor([0, 2, 1, 2]))
    exposed = torch.tensor([True, True, True, True, False])
    labels = torch.tensor([0, 2, 2, 3])
    return features, head, scale, exposed, labels


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("reduction", ["batch", "sample"])
@pytest.mark.parametrize("gsf_features", ["raw", "afs"])
def test_classification_loss_matches_loop_computation(gsf_features, reduction, seed):
    features, head, scale, exposed, labels = gsf_case(seed)
    options = MVPOptions(gsf_features=gsf_features, gsf_reduction=reduction)
    got, logits = classification_loss(features, head, scale, exposed, labels, options)
    expected = classification_loss_by_loops(
        features,
        head.weight.detach(),
        head.bias.detach(),
        scale,
        exposed,
        labels,
        gsf_features,
        reduction,
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # the returned logits are the AFS ones the CE uses
    scaled = afs_features(features, head.weight, labels, 0.5)
    assert torch.allclose(logits, (head(scaled) * scale).masked_fill(~exposed, float("-inf")))


def test_gsf_feature_variants_differ_only_with_afs():
    features, head, scale, exposed, labels = gsf_case()
    raw, afs = (
        classification_loss(features, head, scale, exposed, labels, MVPOptions(gsf_features=v))[0]
        for v in ("raw", "afs")
    )
    assert abs(raw.item() - afs.item()) > 1e-3
    raw, afs = (
        classification_loss(
            features, head, scale, exposed, labels, MVPOptions(gsf_features=v, use_afs=False)
        )[0]
        for v in ("raw", "afs")
    )
    assert raw.item() == pytest.approx(afs.item(), rel=1e-6)
    expected = classification_loss_by_loops(
        features,
        head.weight.detach(),
        head.bias.detach(),
        scale,
        exposed,
        labels,
        "raw",
        "batch",
        use_afs=False,
    )
    assert raw.item() == pytest.approx(expected, rel=1e-5)


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
    """≈554k trainable parameters for D = 768, C = 100 (the paper's setting)."""
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


@pytest.mark.parametrize("gsf_features", ["raw", "afs"])
def test_train_step_gsf_loss_matches_loop_computation(gsf_features):
    learner = make(gsf_features=gsf_features)
    x, y, exposed = batch()
    with torch.no_grad():
        tokens = learner.backbone.tokens(x)
        _, selected = learner._select(tokens)
        features = learner._features(tokens, selected)
        scale = learner._scale(selected, features)
    head = learner.head
    expected = classification_loss_by_loops(
        features, head.weight.detach(), head.bias.detach(), scale, exposed, y, gsf_features, "batch"
    )
    assert learner.train_step(x, y, exposed)["loss_cls"] == pytest.approx(expected, rel=1e-5)


def test_gsf_features_option_changes_the_loss_and_is_checked():
    x, y, exposed = batch()
    raw, afs = (make(gsf_features=v).train_step(x, y, exposed) for v in ("raw", "afs"))
    assert raw["loss_cls"] != pytest.approx(afs["loss_cls"], rel=1e-6)
    assert raw["loss_cvpt"] == afs["loss_cvpt"]
    assert MVPOptions().gsf_features == "raw"
    with pytest.raises(ConfigError) as info:
        parse_options(MVP, {"gsf_features": "scaled"})
    assert info.value.key == "strategy.options.gsf_features"


@pytest.mark.parametrize("pairing", ["all_pairs", "own_key"])
def test_train_step_cvpt_loss_matches_loop_computation(pairing):
    # no selection penalty so that several keys (with different counts) get selected
    learner = make(cvpt_pairing=pairing, use_penalty=False)
    with torch.no_grad():
        learner.counts.copy_(torch.arange(10))
    x, y, exposed = batch()
    with torch.no_grad():
        tokens = learner.backbone.tokens(x)
        query = learner.backbone.query(tokens, final=False)
        _, selected = learner._select(tokens)
    assert len(set(learner.counts[selected].tolist())) > 1  # unequal key counts in the batch
    keys = learner.keys.detach().clone()
    expected = cvpt_by_loops(query, keys, selected, learner.counts.clone(), pairing)
    assert learner.train_step(x, y, exposed)["loss_cvpt"] == pytest.approx(expected, abs=1e-6)


def test_cvpt_pairing_option_is_checked_and_defaults_to_all_pairs():
    assert MVPOptions().cvpt_pairing == "all_pairs"
    with pytest.raises(ConfigError) as info:
        parse_options(MVP, {"cvpt_pairing": "pairs"})
    assert info.value.key == "strategy.options.cvpt_pairing"


def test_trunc_normal_is_timms_draw_for_draw():
    for seed in (0, 1):
        torch.manual_seed(seed)
        reference = timm.layers.trunc_normal_(torch.empty(100, 768), std=0.02)
        ours = trunc_normal_(torch.empty(100, 768), torch.Generator().manual_seed(seed), std=0.02)
        assert torch.equal(ours, reference)
    # std 0.02 with timm's absolute bounds ±2 (= ±100σ): an untruncated N(0, 0.02²) in practice
    assert ours.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(ours.mean().item()) < 1e-3
    assert ours.abs().max().item() < 6 * 0.02
    # the bounds are absolute values, not multiples of std
    torch.manual_seed(2)
    reference = timm.layers.trunc_normal_(torch.empty(10_000), std=0.02, a=-0.01, b=0.03)
    ours = trunc_normal_(
        torch.empty(10_000), torch.Generator().manual_seed(2), 0.02, 0, -0.01, 0.03
    )
    assert torch.equal(ours, reference)
    assert ours.min().item() >= -0.01 and ours.max().item() <= 0.03


def test_linear_head_inits():
    timm_head = linear_head(768, 100, torch.Generator().manual_seed(0))
    assert torch.all(timm_head.bias == 0)
    assert timm_head.weight.std().item() == pytest.approx(0.02, rel=0.02)
    torch_head = linear_head(768, 100, torch.Generator().manual_seed(0), "torch")
    bound = 1 / math.sqrt(768)
    assert torch_head.weight.abs().max().item() <= bound
    assert torch_head.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert torch_head.bias.abs().max().item() <= bound and torch.any(torch_head.bias != 0)
    with pytest.raises(ValueError):
        linear_head(4, 2, torch.Generator(), "xavier")


@pytest.mark.parametrize("name", ["mvp", "mvp_r", "l2p", "dualprompt"])
def test_prompt_learner_heads_use_timm_init_by_default(name):
    learner = make(name, seed=3)
    # the head is the first draw from the learner's generator (the seed's prompt_init stream)
    torch.manual_seed(derived_seed(3, "prompt_init"))
    reference = timm.layers.trunc_normal_(torch.empty(NUM_CLASSES, 24), std=0.02)
    assert torch.equal(learner.head.weight.detach(), reference)
    assert torch.all(learner.head.bias == 0)
    legacy = make(name, seed=3, head_init="torch")
    assert torch.any(legacy.head.bias != 0)
    assert legacy.head.weight.abs().max().item() <= 1 / math.sqrt(24)
    with pytest.raises(ConfigError) as info:
        parse_options(CONTINUAL_LEARNERS.get(name), {"head_init": "zeros"})
    assert info.value.key == "strategy.options.head_init"


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
