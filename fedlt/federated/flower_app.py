"""Flower adapters: a Message-API ServerApp and ClientApp around the fedlt engine.

The ClientApp is stateless: each training message carries the resolved experiment config
(as YAML text), the partition id to train, the round, the global state and that client's
persistent state (read from the server-side :class:`~fedlt.federated.state_store.ClientStateStore`);
the reply carries the update, the new client state and metrics. A worker process builds the
data, model and strategy once per config (:func:`fedlt.federated.runtime.get_runtime`).

Records (flwr 1.42):
  train message: ``config`` ConfigRecord {fedlt-config, partition-id, round},
  ``global`` ArrayRecord, ``client_state`` ArrayRecord (possibly empty);
  reply: ``update`` ArrayRecord, ``client_state`` ArrayRecord, ``metrics`` MetricRecord
  (``num-examples`` and the strategy's scalars).

Nodes are discovered with a ``query`` message answered with the node's ``partition-id``
(node ids are random; partition ids are what the data and the state store are keyed by).

``server_app`` / ``client_app`` are the components named in ``pyproject.toml`` for
``flwr run .``; :func:`fedlt.federated.simulation.run_flower` builds its own ServerApp with a
closure around a prepared :class:`~fedlt.federated.engine.FederatedEngine`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedlt.errors import RunError
from fedlt.federated.engine import ClientOutcome
from fedlt.federated.runtime import client_train
from strategies.federated.base import LocalResult, StateDict

PARTITION_KEY = "partition-id"
CONFIG_KEY = "fedlt-config"


def to_record(state: Mapping) -> ArrayRecord:
    return ArrayRecord(torch_state_dict=dict(state)) if state else ArrayRecord()


def from_record(record: ArrayRecord | None) -> StateDict:
    if record is None or len(record) == 0:
        return {}
    return {k: v.clone() for k, v in record.to_torch_state_dict().items()}


# --------------------------------------------------------------------------- ClientApp
client_app = ClientApp()


@client_app.query()
def report_partition(msg: Message, context: Context) -> Message:
    """Discovery: tell the server which partition this node serves."""
    pid = int(context.node_config[PARTITION_KEY])
    return Message(RecordDict({"node": ConfigRecord({PARTITION_KEY: pid})}), reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Run the strategy's local update for the partition named in the message."""
    config = msg.content["config"]
    result = client_train(
        str(config[CONFIG_KEY]),
        int(config[PARTITION_KEY]),
        int(config["round"]),
        from_record(msg.content["global"]),
        from_record(msg.content.array_records.get("client_state")),
    )
    metrics = {"num-examples": int(result.num_examples)}
    metrics.update({k: float(v) for k, v in result.metrics.items()})
    content = RecordDict(
        {
            "update": to_record(result.update),
            "client_state": to_record(result.client_state),
            "metrics": MetricRecord(metrics),
        }
    )
    return Message(content, reply_to=msg)


# ----------------------------------------------------------------------- server side
class GridExecutor:
    """Sends each round's training messages through a Flower ``Grid``."""

    def __init__(
        self, grid: Grid, text: str, timeout: float, num_nodes: int, connect_timeout: float = 120.0
    ) -> None:
        self.grid = grid
        self.text = text
        self.timeout = timeout
        self.node_of = self._discover(num_nodes, connect_timeout)

    def _wait_for_nodes(self, num_nodes: int, connect_timeout: float) -> list[int]:
        """Nodes register asynchronously: wait until ``num_nodes`` are connected."""
        deadline = time.monotonic() + connect_timeout
        while True:
            node_ids = sorted(self.grid.get_node_ids())
            if len(node_ids) >= num_nodes:
                return node_ids
            if time.monotonic() > deadline:
                raise RunError(
                    f"only {len(node_ids)} of {num_nodes} Flower SuperNodes connected within "
                    f"{connect_timeout:.0f} s (data.partition.num_clients = {num_nodes})"
                )
            time.sleep(0.1)

    def _discover(self, num_nodes: int, connect_timeout: float) -> dict[int, int]:
        node_ids = self._wait_for_nodes(num_nodes, connect_timeout)
        messages = [
            Message(
                RecordDict(), dst_node_id=n, message_type=MessageType.QUERY, group_id="discovery"
            )
            for n in node_ids
        ]
        node_of: dict[int, int] = {}
        for reply in self.grid.send_and_receive(messages, timeout=self.timeout):
            if reply.has_error():
                continue
            pid = int(reply.content["node"][PARTITION_KEY])
            node_of[pid] = reply.metadata.src_node_id
        return node_of

    def train(
        self,
        round_: int,
        client_ids: list[int],
        global_state: StateDict,
        client_states: Mapping[int, StateDict | None],
    ) -> dict[int, ClientOutcome]:
        global_record = to_record(global_state)
        messages, pid_of = [], {}
        outcomes: dict[int, ClientOutcome] = {}
        for k in client_ids:
            if k not in self.node_of:
                outcomes[k] = RunError(f"no SuperNode serves partition {k}")
                continue
            content = RecordDict(
                {
                    "config": ConfigRecord(
                        {CONFIG_KEY: self.text, PARTITION_KEY: k, "round": round_}
                    ),
                    "global": global_record,
                    "client_state": to_record(client_states.get(k) or {}),
                }
            )
            messages.append(
                Message(
                    content,
                    dst_node_id=self.node_of[k],
                    message_type=MessageType.TRAIN,
                    group_id=str(round_),
                )
            )
            pid_of[self.node_of[k]] = k
        for reply in self.grid.send_and_receive(messages, timeout=self.timeout):
            k = pid_of.get(reply.metadata.src_node_id)
            if k is None:
                continue
            if reply.has_error():
                outcomes[k] = RuntimeError(reply.error.reason)
                continue
            metrics = dict(reply.content["metrics"])
            num_examples = int(metrics.pop("num-examples"))
            outcomes[k] = LocalResult(
                update=from_record(reply.content["update"]),
                num_examples=num_examples,
                client_state=from_record(reply.content.array_records.get("client_state")),
                metrics={m: float(v) for m, v in metrics.items()},
            )
        return outcomes


def make_server_app(main: Callable[[Grid], None]) -> ServerApp:
    """A ServerApp whose main runs ``main(grid)`` (closure over a prepared engine)."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        main(grid)

    return app


server_app = ServerApp()


@server_app.main()
def _flwr_run_main(grid: Grid, context: Context) -> None:
    """Entry point for ``flwr run .``: the config path comes from the run config."""
    from fedlt.config import load_config
    from fedlt.federated.engine import FederatedEngine
    from fedlt.federated.runtime import config_text
    from fedlt.runs import RunDirectory

    path = Path(str(context.run_config.get(CONFIG_KEY, "simulations/default.yaml")))
    cfg = load_config(path if path.is_file() else None)
    run = RunDirectory.create(cfg)
    logging.getLogger("fedlt").info("fedlt run directory: %s", run.path)
    engine = FederatedEngine(run, progress=False)
    executor = GridExecutor(
        grid, config_text(cfg), cfg.federated.round_timeout, cfg.data.partition.num_clients
    )
    engine.run_rounds(executor)
