"""FederatedData assembly, local test sets, class groups and tensor transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedlt.config import DataConfig, LongTailConfig, PartitionConfig
from fedlt.data.client_testsets import local_test_indices
from fedlt.data.federated import build_federated_data, class_groups
from fedlt.data.transforms import random_crop_flip, to_tensor


def synthetic_cfg(tmp_path, **partition) -> DataConfig:
    return DataConfig(
        source="synthetic",
        options={"num_classes": 5, "image_size": 4, "train_per_class": 40, "test_per_class": 10},
        cache_dir=str(tmp_path / "cache"),
        longtail=LongTailConfig(profile="exponential", imbalance_factor=10),
        partition=PartitionConfig(**{"num_clients": 4, "alpha": 0.5, **partition}),
    )


def test_build_federated_data_consistent(tmp_path):
    data = build_federated_data(synthetic_cfg(tmp_path), seed=7)
    assert data.num_classes == 5 and data.num_clients == 4
    assert data.image_shape == (3, 4, 4)
    assert data.class_counts.tolist() == [40, 22, 12, 7, 4]
    assert np.array_equal(data.class_counts, np.bincount(data.train.labels, minlength=5))
    assert np.array_equal(data.client_class_counts.sum(axis=0), data.class_counts)
    for k in range(4):
        labels = data.train.labels[data.client_indices[k]]
        assert np.array_equal(np.bincount(labels, minlength=5), data.client_class_counts[k])
    assert len(data.test) == 50
    assert len(data.source_indices) == len(data.train)
    assert len(data.mean) == 3 and all(0 < s < 1 for s in data.std)
    assert data.empty_clients == [k for k in range(4) if len(data.client_indices[k]) == 0]


def test_same_seed_identical_other_seed_different(tmp_path):
    a = build_federated_data(synthetic_cfg(tmp_path), seed=1)
    b = build_federated_data(synthetic_cfg(tmp_path), seed=1)
    c = build_federated_data(synthetic_cfg(tmp_path), seed=2)
    same = zip(
        a.client_indices + a.client_test_indices,
        b.client_indices + b.client_test_indices,
        strict=True,
    )
    assert all(np.array_equal(x, y) for x, y in same)
    assert np.array_equal(a.source_indices, b.source_indices)
    assert not np.array_equal(a.source_indices, c.source_indices)
    assert not np.array_equal(a.client_class_counts, c.client_class_counts)


def test_long_tail_stream_independent_of_partition(tmp_path):
    a = build_federated_data(synthetic_cfg(tmp_path, alpha=0.5), seed=3)
    b = build_federated_data(synthetic_cfg(tmp_path, name="iid"), seed=3)
    assert np.array_equal(a.source_indices, b.source_indices)


def test_local_test_formula_and_cap():
    counts = np.array([[10, 0], [5, 5], [0, 0]])
    test_labels = np.array([0] * 4 + [1] * 40)
    parts = local_test_indices(counts, test_labels, np.random.default_rng(0))
    # client 0: class 0 wants int(10/20*44) = 22, capped at the 4 that exist
    assert sorted(test_labels[parts[0]].tolist()) == [0] * 4
    # client 1: class 0 int(5/20*44) = 11 -> 4; class 1 -> 11
    assert np.bincount(test_labels[parts[1]], minlength=2).tolist() == [4, 11]
    assert len(parts[2]) == 0
    assert all(len(np.unique(p)) == len(p) for p in parts)


def test_class_groups_count_definition():
    groups = class_groups(np.array([150, 101, 100, 20, 19, 0]))
    assert groups["count"] == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}


def test_class_groups_mass_definition_and_boundaries():
    groups = class_groups(np.array([4, 50, 6, 30, 10]))  # sorted: 50 30 10 6 4 of 100
    assert groups["mass"] == {"many": [1, 3], "medium": [2, 4], "few": [0]}
    # Exactly at the lines: the class starting at 75% is middle, at 95% is tail.
    boundary = class_groups(np.array([75, 20, 5]))
    assert boundary["mass"] == {"many": [0], "medium": [1], "few": [2]}


def test_to_tensor_normalises_per_channel():
    images = np.zeros((2, 3, 3, 2), dtype=np.uint8)
    images[..., 0] = 255
    x = to_tensor(images, mean=(0.5, 0.0), std=(0.25, 1.0))
    assert x.shape == (2, 2, 3, 3) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.full((2, 3, 3), 2.0))
    assert torch.allclose(x[:, 1], torch.zeros(2, 3, 3))


def reference_crop_flip(x, seed, padding):
    """Per-image loop with the same draws, as torchvision would apply them one by one."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 2 * padding + 1, (2, len(x)), generator=generator)
    flips = torch.rand(len(x), generator=generator) < 0.5
    padded = F.pad(x, (padding,) * 4)
    h, w = x.shape[-2:]
    out = []
    for i in range(len(x)):
        top, left = int(offsets[0, i]), int(offsets[1, i])
        crop = padded[i, :, top : top + h, left : left + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_random_crop_flip_matches_per_image_reference():
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    got = random_crop_flip(x, torch.Generator().manual_seed(5), padding=2)
    assert torch.equal(got, reference_crop_flip(x, 5, padding=2))
    again = random_crop_flip(x, torch.Generator().manual_seed(5), padding=2)
    other = random_crop_flip(x, torch.Generator().manual_seed(6), padding=2)
    assert torch.equal(got, again) and not torch.equal(got, other)


def test_random_crop_flip_fill_value():
    x = torch.ones(32, 1, 4, 4)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=4, fill=-3.0)
    assert set(torch.unique(out).tolist()) == {-3.0, 1.0}
    assert out.shape == x.shape


def test_random_crop_flip_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"expected a \(N, C, H, W\) batch"):
        random_crop_flip(torch.zeros(3, 4, 4), torch.Generator())
