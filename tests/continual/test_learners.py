"""Baseline learners: finetune, ER, EWC++, LwF (losses, state, options)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedlt.errors import ConfigError
from fedlt.models import build_model
from strategies.continual import CONTINUAL_LEARNERS, parse_options

NUM_CLASSES = 5
OURS = ["finetune", "er", "ewcpp", "lwf"]


def make_learner(name: str, seed: int = 0, **options):
    cls = CONTINUAL_LEARNERS.get(name)
    opts = parse_options(cls, {"lr": 0.01, **options})
    torch.manual_seed(seed)

    def factory() -> nn.Module:
        return build_model("cnn_small", NUM_CLASSES, (1, 6, 6), {"width": 4, "feature_dim": 8})

    return cls(opts, factory, NUM_CLASSES, "cpu", seed)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (12,), generator=g)
    exposed = torch.tensor([True, True, True, False, False])
    return x, y, exposed


def test_registry_flags():
    assert CONTINUAL_LEARNERS.get("er").uses_memory
    assert not any(CONTINUAL_LEARNERS.get(n).uses_memory for n in ("finetune", "ewcpp", "lwf"))


@pytest.mark.parametrize("name", OURS)
def test_train_steps_reduce_loss_and_mask_unexposed(name):
    learner = make_learner(name)
    x, y, exposed = batch()
    first = learner.train_step(x, y, exposed)["loss"]
    for _ in range(15):
        last = learner.train_step(x, y, exposed)["loss"]
    assert last < first
    learner.eval()
    logits = learner(x, exposed)
    assert torch.isinf(logits[:, 3:]).all() and torch.isfinite(logits[:, :3]).all()


@pytest.mark.parametrize("name", OURS)
def test_state_dict_carries_optimizer_for_exact_continuation(name):
    a = make_learner(name, seed=0)
    x, y, exposed = batch()
    for i in range(3):
        a.train_step(x, y, exposed)
        if i == 1:
            a.on_task_end(0)
    b = make_learner(name, seed=1)
    b.load_state_dict(a.state_dict())
    x2, y2, _ = batch(1)
    a.train_step(x2, y2, exposed)
    b.train_step(x2, y2, exposed)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # a learner without the optimizer state would step differently (Adam moments)
    c = make_learner(name, seed=1)
    c.load_state_dict(
        {k: v for k, v in a.state_dict().items() if not k.endswith("_extra_state")}, strict=False
    )
    c.train_step(x2, y2, exposed)
    a.train_step(x2, y2, exposed)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))


def test_ewcpp_fisher_moving_average_and_penalty_gradient():
    alpha, lam = 0.3, 50.0
    learner = make_learner("ewcpp", ewc_lambda=lam, alpha=alpha)
    x, y, exposed = batch()
    params = learner.trainable_parameters()

    def ce_grads():
        learner.train()
        learner.optimizer.zero_grad()
        nn.functional.cross_entropy(learner(x, exposed), y).backward()
        return [p.grad.clone() for p in params]

    g0 = ce_grads()
    learner.after_backward()
    for f, g in zip(learner.fisher, g0, strict=True):
        torch.testing.assert_close(f, alpha * g * g)  # F starts at 0
    learner.on_task_end(0)
    anchor = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(0.05)
    fisher_before = [f.clone() for f in learner.fisher]
    g1 = ce_grads()
    learner.after_backward()
    for p, f0, g, a in zip(params, fisher_before, g1, anchor, strict=True):
        fisher = alpha * g * g + (1 - alpha) * f0
        # d/dθ (λ/2) Σ F (θ − θ*)² = λ F (θ − θ*)
        torch.testing.assert_close(p.grad, g + lam * fisher * (p.detach() - a))
    assert learner.last_penalty > 0


def test_lwf_distills_old_classes_after_a_task_end():
    learner = make_learner("lwf", temperature=2.0)
    x, y, exposed = batch()
    logits = learner(x, exposed)
    assert learner.extra_loss(x, logits, exposed) is None  # no teacher yet
    learner.train_step(x, y, exposed)
    learner.on_task_end(0)
    assert learner.old_classes.tolist() == exposed.tolist()
    wider = torch.tensor([True, True, True, True, False])
    learner.eval()
    logits = learner(x, wider)
    loss = learner.extra_loss(x, logits, wider)
    # teacher == student right after the task end: the loss is the teacher's entropy at T=2
    p = torch.softmax(logits[:, :3] / 2.0, dim=1)
    torch.testing.assert_close(loss, -(p * p.log()).sum(1).mean())
    teacher_before = [t.clone() for t in learner.teacher.parameters()]
    for _ in range(3):
        learner.train_step(x, y, wider)
    assert all(
        torch.equal(a, b) for a, b in zip(teacher_before, learner.teacher.parameters(), strict=True)
    )
    assert not any(t.requires_grad for t in learner.teacher.parameters())


def test_freeze_backbone_trains_only_the_head():
    learner = make_learner("er", freeze_backbone=True)
    backbone = [p.clone() for p in learner.model.backbone.parameters()]
    head = learner.model.head.weight.clone()
    running = learner.model.backbone[1].running_mean.clone()
    x, y, exposed = batch()
    for _ in range(3):
        learner.train_step(x, y, exposed)
    assert all(
        torch.equal(a, b)
        for a, b in zip(backbone, learner.model.backbone.parameters(), strict=True)
    )
    assert torch.equal(running, learner.model.backbone[1].running_mean)  # BN stays in eval
    assert not torch.equal(head, learner.model.head.weight)


def test_options_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"strategy\.options\.alpha"):
        parse_options(CONTINUAL_LEARNERS.get("ewcpp"), {"alpha": 2.0})
    with pytest.raises(ConfigError, match=r"strategy\.options\.optimizer"):
        parse_options(CONTINUAL_LEARNERS.get("er"), {"optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match=r"strategy\.options\.temprature"):
        parse_options(CONTINUAL_LEARNERS.get("lwf"), {"temprature": 2})
