"""Cohorts over a pool of SuperNodes, without Ray: the real ClientApp handlers behind a Grid
that runs them in this process, in an order the test chooses.

The numbers must not depend on the pool size, the cohort split, the order replies arrive
in, or the placement (pool vs one node per partition with its own data): every variant's
metrics.jsonl is byte-identical to the in-process loop's.
"""

from __future__ import annotations

import uuid

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.app.message_type import MessageType
from flwr.supercore.task_identity import TaskIdentity

from fedlt.federated import flower_app
from fedlt.federated.cohorts import assign_cohorts, contiguous_cohorts
from fedlt.federated.engine import FederatedEngine, InProcessExecutor
from fedlt.federated.flower_app import GridExecutor
from fedlt.preflight import preflight
from fedlt.runs import RunDirectory

HANDLERS = {
    MessageType.TRAIN: flower_app.train,
    MessageType.EVALUATE: flower_app.evaluate,
    MessageType.QUERY: flower_app.warm_up,
}


class InProcessGrid:
    """A Flower ``Grid`` whose nodes are the real ClientApp handlers, called on pull.

    ``reverse``: answer the pushed messages last-first (replies arrive out of order).
    ``own_data``: node i serves partition i of ``num_partitions`` (real SuperNodes)."""

    def __init__(self, num_nodes: int, reverse: bool = False, own_data: bool = False) -> None:
        self.nodes = {1000 + i: i for i in range(num_nodes)}
        self.num_nodes = num_nodes
        self.own_data = own_data
        self.reverse = reverse
        self.pending: list[Message] = []
        self.messages_per_round: list[int] = []

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            ids.append(msg.metadata.message_id)
            self.pending.append(msg)
        if messages and messages[0].metadata.message_type == MessageType.TRAIN:
            self.messages_per_round.append(len(messages))
        return ids

    def pull_messages(self, message_ids: list[str]) -> list[Message]:
        wanted = [m for m in self.pending if m.metadata.message_id in set(message_ids)]
        if not wanted:
            return []
        msg = wanted[-1] if self.reverse else wanted[0]
        self.pending.remove(msg)
        node = msg.metadata.dst_node_id
        node_config = {"partition-id": self.nodes[node], "num-partitions": self.num_nodes}
        context = Context(
            run_id=1, node_id=node, node_config=node_config, state=RecordDict(), run_config={}
        )
        return [HANDLERS[msg.metadata.message_type](msg, context)]


@pytest.fixture(autouse=True)
def task_identity():
    """Messages need a run id outside a running simulation."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def _run(cfg, path, make_executor=None) -> tuple[str, FederatedEngine]:
    preflight(cfg)
    run = RunDirectory.create(cfg, path)
    engine = FederatedEngine(run, progress=False)
    executor = make_executor(engine) if make_executor else InProcessExecutor(engine.text)
    engine.run_rounds(executor)
    run.release_lock()
    return (run.path / "metrics.jsonl").read_text(), engine


def _grid_executor(grid: InProcessGrid, planner=assign_cohorts):
    def make(engine: FederatedEngine) -> GridExecutor:
        return GridExecutor.for_engine(grid, engine, planner=planner)

    return make


# 40 clients all participating, at most 16 blocks a round: 13 blocks of three clients (partial
# sums merged) and one of one (sent as its update); FedLoGe has per-client state and
# personalised evaluation; client 3 fails in round 2.
OVERRIDES = (
    "strategy.name=fedloge",
    "data.partition.num_clients=40",
    "federated.rounds=2",
    "federated.fail_clients=[[2, 3]]",
)


@pytest.fixture
def sixteen_blocks(monkeypatch):
    from fedlt.federated import engine

    monkeypatch.setattr(engine, "max_blocks", lambda numel: 16)


def test_pool_sizes_cohort_splits_arrival_order_and_placement_give_identical_metrics(
    tiny_config, tmp_path, sixteen_blocks
):
    cfg = lambda: tiny_config(*OVERRIDES)  # noqa: E731
    reference, _ = _run(cfg(), tmp_path / "inprocess")
    assert '"3": "InjectedClientFailure' in reference.splitlines()[1]
    variants = {
        "pool1": InProcessGrid(1),
        "pool2": InProcessGrid(2),
        "pool3-reversed": InProcessGrid(3, reverse=True),
    }
    for name, grid in variants.items():
        text, _ = _run(cfg(), tmp_path / name, _grid_executor(grid))
        assert text == reference, name
    assert variants["pool3-reversed"].messages_per_round == [3, 3]  # one cohort per node

    contiguous = InProcessGrid(2, reverse=True)
    text, _ = _run(
        cfg(),
        tmp_path / "contiguous",
        _grid_executor(contiguous, lambda ids, _s, n: contiguous_cohorts(ids, n)),
    )
    assert text == reference

    own = InProcessGrid(40, reverse=True, own_data=True)
    text, _ = _run(cfg(), tmp_path / "own-data", _grid_executor(own))
    assert text == reference
    assert own.messages_per_round == [40, 40]  # one client per node


def test_pool_placement_is_chosen_unless_every_node_owns_a_partition(tiny_config, tmp_path):
    cfg = tiny_config("data.partition.num_clients=6", "federated.rounds=1")
    preflight(cfg)
    engine = FederatedEngine(RunDirectory.create(cfg, tmp_path / "r"), progress=False)
    pool = GridExecutor(InProcessGrid(2), engine.text, 6, engine.client_sizes, round_timeout=60)
    own = GridExecutor(InProcessGrid(6), engine.text, 6, engine.client_sizes, round_timeout=60)
    assert (pool.placement, own.placement) == ("pool", "own-data")
    assert own.node_of_partition == {k: 1000 + k for k in range(6)}
    engine.run.release_lock()


def test_a_node_error_fails_its_cohort_clients_only(tiny_config, tmp_path, monkeypatch):
    """A node whose handler breaks (not a client error) fails every client it was given;
    the other node's clients go on and the round completes."""
    cfg = tiny_config(
        "data.partition.num_clients=8", "federated.rounds=1", "federated.max_failure_fraction=1"
    )
    grid = InProcessGrid(2)
    real_train = HANDLERS[MessageType.TRAIN]

    def flaky(msg, context):
        if context.node_id == 1001:
            return Message(Error(code=0, reason="node crashed"), reply_to=msg)
        return real_train(msg, context)

    monkeypatch.setitem(HANDLERS, MessageType.TRAIN, flaky)
    text, _ = _run(cfg, tmp_path / "r", _grid_executor(grid))
    record = next(line for line in text.splitlines() if '"round": 1' in line)
    assert "the node failed: node crashed" in record
