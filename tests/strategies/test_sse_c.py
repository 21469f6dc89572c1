"""SSE-C construction (FedLoGe, Xiao et al., ICLR 2024; docs/fedloge.md)."""

from __future__ import annotations

import math

import pytest
import torch

from fedlt.errors import ConfigError
from strategies.federated import sse_c
from strategies.federated.sse_c import (
    SSECSpec,
    build_sse_c,
    column_geometry,
    compute_sse_c,
    optimise_sse_c,
    simplex_etf,
    sse_c_bias,
    sse_c_layer,
    sse_c_loss,
)


def test_full_recipe_c10_norms_angles_and_sparsity():
    """The spec's recipe (β 0.6, τ 0.1, Adam lr 1e-4, 10,000 steps) at C=10, d=64 (~5 s)."""
    spec = SSECSpec(feature_dim=64, num_classes=10, seed=3407)
    weight, mask = optimise_sse_c(spec)
    norms, angles = column_geometry(weight)
    assert torch.all((norms - 0.100).abs() <= 0.002), norms
    ideal = math.degrees(math.acos(-1.0 / 9))  # 96.38°
    assert abs(float(angles.mean()) - ideal) <= 0.5, float(angles.mean())
    assert int((mask == 0).sum()) == int(0.6 * 64 * 10) == 384
    assert torch.all(weight[mask == 0] == 0)  # pruned entries stayed zero through 10k steps
    assert int((weight == 0).sum()) == 384  # and no survivor is exactly zero in float64
    assert torch.equal(compute_sse_c(spec), weight.float())


def test_simplex_etf_geometry():
    etf = simplex_etf(32, 5, torch.Generator().manual_seed(0))
    gram = etf.T @ etf
    assert torch.allclose(gram.diagonal(), torch.ones(5, dtype=torch.float64), atol=1e-12)
    off = gram[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / 4), atol=1e-12)


def test_loss_matches_hand_value():
    # columns e1 (norm 1) and 2·e2 (norm 2), orthogonal: angle π/2 each.
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    expected = (1 - 0.1) ** 2 + (2 - 0.1) ** 2 - math.pi / 2
    assert float(sse_c_loss(w, 0.1)) == pytest.approx(expected, abs=1e-9)


def test_deterministic_per_seed_and_different_across_seeds():
    spec = SSECSpec(feature_dim=24, num_classes=6, steps=300, seed=11)
    a, b = compute_sse_c(spec), compute_sse_c(spec)
    assert torch.equal(a, b)
    other = compute_sse_c(SSECSpec(feature_dim=24, num_classes=6, steps=300, seed=12))
    assert not torch.equal(a, other)
    assert not torch.equal(a == 0, other == 0)  # a different sparsity pattern too


def test_disk_cache_roundtrip_and_corrupt_file(tmp_path, monkeypatch):
    spec = SSECSpec(feature_dim=20, num_classes=4, steps=100, seed=5)
    first = build_sse_c(spec, folder=str(tmp_path))
    path = tmp_path / "sse_c" / spec.cache_name()
    assert path.is_file()
    sse_c._cached_sse_c.cache_clear()

    def fail(_spec):
        raise AssertionError("recomputed although cached on disk")

    monkeypatch.setattr(sse_c, "compute_sse_c", fail)
    assert torch.equal(build_sse_c(spec, folder=str(tmp_path)), first)
    # a corrupt file is a miss: recomputed and rewritten
    monkeypatch.undo()
    sse_c._cached_sse_c.cache_clear()
    path.write_bytes(b"not a tensor")
    assert torch.equal(build_sse_c(spec, folder=str(tmp_path)), first)
    assert torch.equal(torch.load(path, weights_only=True), first)


def test_returned_matrix_is_a_copy():
    spec = SSECSpec(feature_dim=20, num_classes=4, steps=50, seed=1)
    a = build_sse_c(spec, use_disk_cache=False)
    a.fill_(3.0)
    assert not torch.equal(build_sse_c(spec, use_disk_cache=False), a)


def test_layer_is_frozen_with_seeded_default_bias():
    spec = SSECSpec(feature_dim=25, num_classes=5, steps=50, seed=2)
    layer = sse_c_layer(spec, bias=True, use_disk_cache=False)
    assert not any(p.requires_grad for p in layer.parameters())
    assert torch.equal(layer.weight, build_sse_c(spec, use_disk_cache=False).T)
    assert torch.all(layer.bias.abs() <= 1 / math.sqrt(25))
    assert torch.equal(layer.bias, sse_c_bias(25, 5, 2))
    assert not torch.equal(sse_c_bias(25, 5, 2), sse_c_bias(25, 5, 3))
    assert sse_c_layer(spec, bias=False, use_disk_cache=False).bias is None


def test_too_narrow_feature_dim_is_a_config_error():
    with pytest.raises(ConfigError, match="feature_dim >= num_classes"):
        build_sse_c(SSECSpec(feature_dim=8, num_classes=10), use_disk_cache=False)
