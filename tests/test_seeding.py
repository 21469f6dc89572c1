"""fedlt.seeding: one stream per (seed, purpose, indices), and both engines' shared long tail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedlt import seeding
from fedlt.config import DataConfig, ExperimentConfig, LongTailConfig, PartitionConfig
from fedlt.seeding import (
    PURPOSES,
    derived_seed,
    purpose_words,
    rng,
    seed_sequence,
    seeded_torch,
    torch_generator,
)


def test_purposes_never_collide_across_seeds():
    """Every (seed, purpose, indices) of a grid gets its own stream: no two derived seeds or
    first draws are equal (the old ``seed + k`` offsets collided across seeds)."""
    keys = [
        (seed, purpose, *indices)
        for seed in range(6)
        for purpose in PURPOSES
        for indices in ((), (0,), (1,), (0, 1), (1, 0))
    ]
    seeds = [derived_seed(*key) for key in keys]
    assert len(set(seeds)) == len(keys)
    draws = [rng(*key).integers(0, 2**63) for key in keys]
    assert len(set(draws)) == len(keys)


def test_the_collision_the_issue_names_is_gone():
    """Before: seed 1's augmentation generator (seed + 2) was seed 0's torch RNG (seed + 3)."""
    old_augment = torch.Generator().manual_seed(1 + 2)
    old_torch = torch.Generator().manual_seed(0 + 3)
    assert torch.equal(torch.rand(4, generator=old_augment), torch.rand(4, generator=old_torch))
    augment = torch_generator(1, "stream_augment")
    learner = torch_generator(0, "learner_torch")
    assert not torch.equal(torch.rand(4, generator=augment), torch.rand(4, generator=learner))
    assert derived_seed(1, "client_train", 0, 0) != derived_seed(0, "client_train", 1, 0)


def test_encoding_is_unambiguous():
    """Length prefixes: a purpose that is a prefix of another, or indices that only differ by
    a trailing zero, still give different word sequences."""
    assert purpose_words("ab") != purpose_words("ab\0")
    spawn = [
        seed_sequence(0, "a").spawn_key,
        seed_sequence(0, "ab").spawn_key,
        seed_sequence(0, "a", 0).spawn_key,
        seed_sequence(0, "a", 0, 0).spawn_key,
    ]
    assert len(set(spawn)) == len(spawn)
    assert all(0 <= w < 2**32 for key in spawn for w in key)


def test_streams_are_deterministic_and_in_range():
    assert derived_seed(3, "model_init") == derived_seed(3, "model_init")
    assert 0 <= derived_seed(2**63 - 1, "partition", 2**32 - 1) < 2**63
    a, b = rng(7, "client_sampling", 4), rng(7, "client_sampling", 4)
    assert np.array_equal(a.random(5), b.random(5))
    with pytest.raises(ValueError):
        rng(0, "client_train", 2**32)
    with pytest.raises(ValueError):
        rng(-1, "partition")
    with pytest.raises(ValueError):
        rng(0, "")


def test_seeded_torch_restores_the_global_rng():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    with seeded_torch(5, "model_init"):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with seeded_torch(5, "model_init"):
        assert torch.equal(torch.rand(3), inside)


def test_legacy_stream_draws_what_the_global_state_draws():
    state = np.random.get_state()
    try:
        np.random.seed(3407)
        expected = np.random.random(5)
    finally:
        np.random.set_state(state)
    assert np.array_equal(seeding.fedloge_partition_stream(3407).random(5), expected)
    assert np.random.get_state()[2] == state[2]  # the global state was left alone
    stream = seeding.legacy_stream(1)
    twin = seeding.copy_legacy(stream)
    assert seeding.legacy_digest(twin) == seeding.legacy_digest(stream)
    twin.random()
    assert seeding.legacy_digest(twin) != seeding.legacy_digest(stream)
    with pytest.raises(ValueError):
        seeding.legacy_stream(2**32)


@pytest.mark.parametrize("rng_mode", ["fedlt", "fedloge-official"])
def test_both_engines_keep_the_same_long_tailed_images(tmp_path, rng_mode):
    from fedlt.continual.engine import load_stream_data
    from fedlt.data.federated import build_federated_data

    data = DataConfig(
        source="synthetic",
        options={"num_classes": 6, "image_size": 3, "train_per_class": 50, "test_per_class": 5},
        cache_dir=str(tmp_path / "cache"),
        rng=rng_mode,
        longtail=LongTailConfig(profile="exponential", imbalance_factor=10),
        partition=PartitionConfig(num_clients=3),
    )
    for seed in (0, 1):
        federated = build_federated_data(data, seed)
        continual = load_stream_data(ExperimentConfig(seed=seed, engine="continual", data=data))
        assert np.array_equal(federated.train.images, continual.train.images)
        assert np.array_equal(federated.train.labels, continual.train.labels)
        assert continual.info["longtail_kept"] == len(federated.source_indices)
    other = build_federated_data(data, 1).source_indices
    if rng_mode == "fedlt":
        assert not np.array_equal(build_federated_data(data, 0).source_indices, other)
    else:  # the official long tail ignores the run seed
        assert np.array_equal(build_federated_data(data, 0).source_indices, other)
