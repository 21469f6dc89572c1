"""Prompt machinery: append/run/truncate, queries, frozen eval-mode backbone, layer checks,
and exact resume of a prompt learner from its state_dict."""

from __future__ import annotations

import pytest
import torch

from fedlt.errors import ConfigError
from fedlt.models import build_model
from strategies.continual import CONTINUAL_LEARNERS, parse_options
from strategies.continual.prompts import (
    PromptedViT,
    check_prompt_layers,
    cosine_distance,
    prefix_block,
)

TINY = {"img_size": 8, "patch_size": 4, "embed_dim": 24, "depth": 5, "num_heads": 3}
NUM_CLASSES = 6


@pytest.fixture(autouse=True)
def _fixed_global_seed():
    """Inputs drawn with torch.randn in a test do not depend on the test order."""
    torch.manual_seed(0)


def factory():
    return build_model("vit_tiny_test", NUM_CLASSES, (1, 8, 8), TINY)


def make(name, seed=0, **options):
    cls = CONTINUAL_LEARNERS.get(name)
    return cls(parse_options(cls, options), factory, NUM_CLASSES, "cpu", seed)


def batch(seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (size,), generator=g)
    exposed = torch.zeros(NUM_CLASSES, dtype=torch.bool)
    exposed[:4] = True
    return x, y, exposed


@pytest.fixture
def prompted():
    return PromptedViT(factory().backbone.vit)


def test_check_prompt_layers_against_depth():
    assert check_prompt_layers([0, 4], 5, "k") == [0, 4]
    with pytest.raises(ConfigError) as info:
        check_prompt_layers([2, 5], 5, "strategy.options.e_prompt_layers")
    assert info.value.key == "strategy.options.e_prompt_layers"
    assert "[0, 4]" in str(info.value)
    with pytest.raises(ConfigError, match="distinct"):
        check_prompt_layers([1, 1], 5, "k")


@pytest.mark.parametrize("name", ["mvp", "dualprompt"])
def test_learner_rejects_layers_beyond_depth(name):
    with pytest.raises(ConfigError) as info:
        make(name, e_prompt_layers=[2, 3, 5])
    assert info.value.key == "strategy.options.e_prompt_layers"


def test_unprompted_forward_equals_the_plain_vit(prompted):
    x = torch.randn(3, 1, 8, 8)
    vit = prompted.vit
    expected = vit.forward_head(vit.forward_features(x), pre_logits=True)
    assert torch.allclose(prompted.forward_prompted(prompted.tokens(x)), expected, atol=1e-6)
    # final query = the same CLS feature; penultimate query = CLS after block L−1, no norm
    tokens = prompted.tokens(x)
    assert torch.allclose(prompted.query(tokens, final=True), expected, atol=1e-6)
    h = tokens
    for block in vit.blocks[:-1]:
        h = block(h)
    assert torch.allclose(prompted.query(tokens), h[:, 0], atol=1e-6)


def test_layer_prompt_is_appended_run_and_truncated(prompted):
    tokens = prompted.tokens(torch.randn(2, 1, 8, 8))
    prompt = torch.randn(2, 3, 24)
    h = tokens
    for index, block in enumerate(prompted.vit.blocks):
        if index == 2:
            out = block(torch.cat([h, prompt], dim=1))
            assert out.shape[1] == tokens.shape[1] + 3
            h = out[:, : tokens.shape[1]]
        else:
            h = block(h)
    expected = prompted.vit.forward_head(prompted.vit.norm(h), pre_logits=True)
    got = prompted.forward_prompted(tokens, {2: prompt})
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, prompted.forward_prompted(tokens), atol=1e-4)
    # inserting after CLS instead of appending gives the same result (permutation equivariance)
    h = tokens
    for index, block in enumerate(prompted.vit.blocks):
        if index == 2:
            h = block(torch.cat([h[:, :1], prompt, h[:, 1:]], dim=1))
            h = torch.cat([h[:, :1], h[:, 4:]], dim=1)
        else:
            h = block(h)
    inserted = prompted.vit.forward_head(prompted.vit.norm(h), pre_logits=True)
    assert torch.allclose(got, inserted, atol=1e-5)


def test_input_prompts_persist_through_all_blocks(prompted):
    tokens = prompted.tokens(torch.randn(2, 1, 8, 8))
    prompt = torch.randn(2, 4, 24)
    h = torch.cat([tokens, prompt], dim=1)
    for block in prompted.vit.blocks:
        h = block(h)
    expected = prompted.vit.forward_head(prompted.vit.norm(h), pre_logits=True)
    got = prompted.forward_prompted(tokens, input_prompts=prompt)
    assert torch.allclose(got, expected, atol=1e-6)


def test_prompt_gradients_reach_prompts_not_backbone(prompted):
    tokens = prompted.tokens(torch.randn(2, 1, 8, 8))
    prompt = torch.randn(2, 3, 24, requires_grad=True)
    # (not .sum(): the sum of a LayerNorm output with unit gain is a constant)
    prompted.forward_prompted(tokens, {0: prompt}).pow(2).sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in prompted.vit.parameters())


def test_cosine_distance():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert torch.allclose(cosine_distance(q, k), torch.tensor([[0.0, 1.0, 2.0]]), atol=1e-6)


@pytest.mark.parametrize("name", ["mvp", "mvp_r", "l2p", "dualprompt"])
def test_backbone_frozen_bit_identical_and_in_eval_mode(name):
    learner = make(name)
    learner.train()
    assert learner.training
    assert not learner.backbone.vit.training
    assert all(not m.training for m in learner.backbone.vit.modules())
    before = {k: v.clone() for k, v in learner.backbone.vit.state_dict().items()}
    assert all(not p.requires_grad for p in learner.backbone.vit.parameters())
    for step in range(2):
        learner.train_step(*batch(step))
    assert not learner.backbone.vit.training
    for key, value in learner.backbone.vit.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("name", ["mvp", "l2p", "dualprompt"])
def test_state_dict_excludes_backbone_and_resumes_exactly(name):
    a = make(name, seed=1)
    for step in range(2):
        a.train_step(*batch(step))
    state = a.state_dict()
    assert not any(k.startswith("backbone.") for k in state)
    assert "_extra_state" in state
    b = make(name, seed=2)  # different initial prompts/head: everything must come from state
    b.load_state_dict(state)
    x, y, exposed = batch(5)
    a.train_step(x, y, exposed)
    b.train_step(x, y, exposed)
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if isinstance(va, torch.Tensor):
            assert torch.equal(va, vb), key
    a.eval()
    b.eval()
    assert torch.equal(a(x, exposed), b(x, exposed))


def test_prefix_block_without_prefix_equals_the_block(prompted):
    tokens = prompted.tokens(torch.randn(2, 1, 8, 8))
    block = prompted.vit.blocks[1]
    empty = torch.zeros(2, 0, 24)
    assert torch.allclose(prefix_block(block, tokens, empty, empty), block(tokens), atol=1e-6)


def test_prefix_tuning_with_projected_prompts_equals_prompt_tuning(prompted):
    """Prompt tuning = prefix tuning whose prefixes are the prompt's own keys and values."""
    tokens = prompted.tokens(torch.randn(2, 1, 8, 8))
    prompt = torch.randn(2, 3, 24)
    block = prompted.vit.blocks[3]
    k_weight, v_weight = block.attn.qkv.weight[24:48], block.attn.qkv.weight[48:]
    k_bias, v_bias = block.attn.qkv.bias[24:48], block.attn.qkv.bias[48:]
    normed = block.norm1(prompt)
    prefix_k, prefix_v = normed @ k_weight.T + k_bias, normed @ v_weight.T + v_bias
    got = prompted.forward_prompted(tokens, layer_prefixes={3: (prefix_k, prefix_v)})
    expected = prompted.forward_prompted(tokens, {3: prompt})
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, prompted.forward_prompted(tokens), atol=1e-4)
