"""Each client's own stream and how rounds consume it (fedlt.federated_continual.streams)."""

from __future__ import annotations

import numpy as np
import pytest

from fedlt.continual.stream import stream_from_config
from fedlt.federated.runtime import runtime_for
from fedlt.seeding import derived_seed


def _streams(cfg):
    return runtime_for(cfg).streams


@pytest.mark.parametrize("sync", ["per_client", "shared"])
def test_client_stream_is_the_stream_engines_stream_for_its_labels_and_seed(fcl_config, sync):
    cfg = fcl_config(f"stream.task_sync={sync}", "seed=3")
    rt = runtime_for(cfg)
    streams = rt.streams
    for k in range(rt.data.num_clients):
        local = rt.data.train.labels[rt.data.client_indices[k]]
        split = streams.split  # None for per_client: the stream draws its own
        expected = stream_from_config(
            local, cfg.stream, derived_seed(3, "fcl_stream", k), rt.data.num_classes, split
        )
        got = streams.stream(k)
        assert got.task_sizes == expected.task_sizes
        for a, b in zip(got.tasks, expected.tasks, strict=True):
            np.testing.assert_array_equal(a.indices, b.indices)
        # the order in global training-set indices is the partition's indices in stream order
        np.testing.assert_array_equal(
            streams.order(k),
            rt.data.client_indices[k][np.concatenate([t.indices for t in got.tasks])],
        )
    if sync == "per_client":
        assert streams.split is None


def test_shared_task_sync_gives_every_client_the_same_class_to_task_split(fcl_config):
    shared = _streams(fcl_config("stream.task_sync=shared"))
    splits = {
        tuple((tuple(t.disjoint_classes), tuple(t.blurry_classes)) for t in shared.stream(k).tasks)
        for k in range(shared.num_clients)
    }
    assert len(splits) == 1
    own = _streams(fcl_config("stream.task_sync=per_client"))
    splits = {
        tuple((tuple(t.disjoint_classes), tuple(t.blurry_classes)) for t in own.stream(k).tasks)
        for k in range(own.num_clients)
    }
    assert len(splits) > 1  # each client drew its own
    # shared clients still draw their own orders: two clients' first tasks differ
    assert shared.client_seed(0) != shared.client_seed(1)


def test_round_plan_reads_the_stream_in_order_and_never_crosses_a_task_end(fcl_config):
    streams = _streams(fcl_config("stream.samples_per_round=23", "stream.batch_size=5"))
    k = 0
    order = streams.order(k)
    ends = set(np.cumsum(streams.stream(k).task_sizes).tolist())
    position, seen = 0, []
    while position < streams.length(k):
        plan = streams.plan(k, position)
        chunk = np.concatenate([b.indices for b in plan])
        assert len(chunk) == min(23, streams.length(k) - position)
        np.testing.assert_array_equal(chunk, order[position : position + len(chunk)])
        start = position
        for batch in plan:
            assert 1 <= len(batch.indices) <= 5
            stop = start + len(batch.indices)
            assert batch.ends_task == (stop in ends)
            # no batch straddles a task end
            assert not any(start < e < stop for e in ends)
            start = stop
        seen.append(chunk)
        position += len(chunk)
    np.testing.assert_array_equal(np.concatenate(seen), order)
    assert streams.plan(k, position) == []


def test_exposed_classes_are_those_streamed_so_far_in_first_seen_order(fcl_config):
    streams = _streams(fcl_config())
    labels = streams.labels[streams.order(1)]
    for position in (0, 1, 7, 40, len(labels)):
        expected: list[int] = []
        for y in labels[:position]:
            if int(y) not in expected:
                expected.append(int(y))
        assert streams.exposed(1, position).tolist() == expected
        assert streams.exposed_mask(1, position).sum() == len(expected)


def test_null_samples_per_round_spreads_each_stream_over_the_expected_rounds(fcl_config):
    streams = _streams(fcl_config("stream.samples_per_round=null", "federated.rounds=7"))
    for k in range(streams.num_clients):
        n = streams.length(k)
        assert streams.chunk_size(k) == -(-n // 7)


def test_stream_command_shows_every_client_or_one(tmp_path, capsys):
    import json

    from fedlt.cli import main
    from fedlt.resources import simulations_dir

    config = simulations_dir() / "fedcl" / "digits.yaml"

    assert main(["stream", str(config), "--out", str(tmp_path / "all")]) == 0
    document = json.loads((tmp_path / "all" / "streams.json").read_text())
    assert len(document["clients"]) == 5 and document["task_sync"] == "shared"
    assert main(["stream", str(config), "--client", "2", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "stream.json").read_text())
    assert one["task_sizes"] == document["clients"]["2"]["task_sizes"]
    assert (tmp_path / "one" / "stream.png").stat().st_size > 0
    assert main(["stream", str(config), "--client", "7", "--out", str(tmp_path / "bad")]) != 0
    assert "--client: must lie in [0, 4], got 7" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_round_of_a_stream_is_read_once(fcl_config):
    import torch

    from fedlt.federated_continual.online import OnlineClientData

    rt = runtime_for(fcl_config())
    plan = rt.streams.plan(0, 0)
    exposed = torch.zeros(rt.data.num_classes, dtype=torch.bool)
    data = OnlineClientData(
        plan, rt.t.train_u8, rt.t.train_y, rt._normalise, exposed, rt.data.num_classes,
        None, 2, 0, "none", 4,
    )  # fmt: skip
    steps = list(data.batches(32, torch.Generator()))
    assert len(steps) == 2 * len(plan)  # online_iter steps per batch
    assert data.consumed == len(data) == sum(len(b.indices) for b in plan)
    assert exposed.sum() == len(
        set(rt.data.train.labels[np.concatenate([b.indices for b in plan])])
    )
    with pytest.raises(RuntimeError, match="read once per round"):
        next(data.batches(32, torch.Generator()))
