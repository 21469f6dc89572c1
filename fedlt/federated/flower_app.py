"""Flower adapters: a Message-API ServerApp and ClientApp around the fedlt engine.

Work travels in *cohorts*. Each round the server sends every SuperNode one message naming
the partitions it trains (``partition-ids``) with the global weights once and each of those
clients' persistent state (read from the server-side
:class:`~fedlt.federated.state_store.ClientStateStore`); the node trains them one after
another on its cached runtime (:func:`fedlt.federated.runtime.get_runtime`: data, model and
strategy built once per process) and replies with every client's update, state and metrics.
Personalised evaluation travels the same way. Results do not depend on how clients are
spread over nodes (:mod:`fedlt.federated.cohorts`).

Two placements:

* ``pool`` (simulation: ``fedlt run``, and ``flwr run .`` on a simulation federation): the
  nodes hold no data of their own; any node serves any partition, so a small pool of nodes,
  one per Ray worker, serves any number of registered clients.
* ``own-data`` (real SuperNodes, each started with its ``partition-id``): a node trains only
  its own partition; chosen when the nodes report ``num-partitions`` equal to
  ``data.partition.num_clients``.

Training goes by *blocks* of consecutive clients (:func:`fedlt.federated.cohorts.split_blocks`):
a node sums its blocks' updates where it trains them and returns one partial aggregate per
block, so a round moves at most 32 partial sums back to the server whatever its number of
clients, and the sums are the same whichever node computes them.

Records (flwr 1.42); tensors travel packed, many state dicts in one Array
(:mod:`fedlt.federated.codec`), with their layout in the ``config`` record:
  warm-up query: ``config`` {fedlt-config}; reply ``node`` {partition-id, num-partitions}.
  train / evaluate message: ``config`` {fedlt-config, round, partition-ids, block-ids,
  block-sizes, state-ids, layouts}, ``global`` (the global state), ``states`` (the persistent
  state of the clients in state-ids);
  train reply: ``config`` {results: JSON per client — num_examples and metrics, or error —
  and the blocks that have a partial, layouts}, ``partials`` (one per such block),
  ``states`` (new client states of the successful clients, in order);
  evaluate reply: ``config`` {results: JSON per client — per personal mode, hits per
  class — or error}.

``server_app`` / ``client_app`` are the components named in ``pyproject.toml`` for
``flwr run .``; :func:`fedlt.federated.simulation.run_flower` builds its own ServerApp with a
closure around a prepared :class:`~fedlt.federated.engine.FederatedEngine`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedlt.errors import ConfigError, RunError
from fedlt.federated.codec import pack, unpack
from fedlt.federated.cohorts import CohortPlanner, assign_cohorts
from fedlt.federated.engine import EvalOutcome, RemoteClientError, StateOf
from fedlt.federated.runtime import BlockResult, client_evaluate, get_runtime, train_block
from fedlt.federated.stopping import StopRequest
from strategies.federated.base import Aggregation, LocalResult, StateDict

PARTITION_KEY = "partition-id"
NUM_PARTITIONS_KEY = "num-partitions"
PARTITIONS_KEY = "partition-ids"
CONFIG_KEY = "fedlt-config"
Placement = Literal["pool", "own-data", "auto"]
PULL_INTERVAL_S = 0.02
PACKED = "packed"


def pack_record(states: Sequence[StateDict]) -> tuple[ArrayRecord, str]:
    """Many state dicts as one Flower Array (see :mod:`fedlt.federated.codec`) + layout."""
    buffer, layout = pack(states)
    return ArrayRecord({PACKED: Array(buffer)}), layout


def unpack_record(record: ArrayRecord, layout: str) -> list[StateDict]:
    return unpack(record[PACKED].numpy(), layout)


def _cloned(state: StateDict) -> StateDict:
    return {k: v.clone() for k, v in state.items()}


# --------------------------------------------------------------------------- ClientApp
client_app = ClientApp()


@client_app.query()
def warm_up(msg: Message, context: Context) -> Message:
    """Build this worker's runtime (data, model, strategy) before the first round, so that
    ``federated.round_timeout`` bounds rounds and not start-up; report the node's partition."""
    config = msg.content.config_records.get("config")
    if config is not None and CONFIG_KEY in config:
        get_runtime(str(config[CONFIG_KEY]))
    node = {
        PARTITION_KEY: int(context.node_config.get(PARTITION_KEY, -1)),
        NUM_PARTITIONS_KEY: int(context.node_config.get(NUM_PARTITIONS_KEY, 0)),
    }
    return Message(RecordDict({"node": ConfigRecord(node)}), reply_to=msg)


def _cohort(msg: Message) -> tuple[str, int, list[int], StateDict, dict[int, StateDict]]:
    """Unpack a train/evaluate message: config text, round, partition ids, global state and
    the persistent state of the clients that have one."""
    config = msg.content["config"]
    ids = [int(k) for k in config[PARTITIONS_KEY]]
    [global_state] = unpack_record(msg.content["global"], str(config["global-layout"]))
    with_state = [int(k) for k in config["state-ids"]]
    states = dict(
        zip(
            with_state,
            unpack_record(msg.content["states"], str(config["state-layout"])),
            strict=True,
        )
    )
    return str(config[CONFIG_KEY]), int(config["round"]), ids, global_state, states


def _reply(msg: Message, results: dict[int, Any], arrays: dict[str, list[StateDict]]) -> Message:
    """Reply with per-client results (JSON) and packed tensors (one Array per kind)."""
    config: dict[str, Any] = {"results": json.dumps({str(k): v for k, v in results.items()})}
    content = RecordDict()
    for kind, states in arrays.items():
        content[kind], config[f"{kind}-layout"] = pack_record(states)
    content["config"] = ConfigRecord(config)
    return Message(content, reply_to=msg)


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the message's blocks of clients (:func:`fedlt.federated.runtime.train_block`):
    reply with every client's size, metrics and new state (or its error) and one partial
    aggregate per block."""
    text, round_, ids, global_state, states = _cohort(msg)
    config = msg.content["config"]
    results: dict[int, Any] = {}
    partials: list[StateDict] = []
    partial_blocks: list[int] = []
    singles: list[StateDict] = []
    single_blocks: list[int] = []
    client_states: list[StateDict] = []
    start = 0
    for b, size in zip(config["block-ids"], config["block-sizes"], strict=True):
        block = ids[start : start + int(size)]
        start += int(size)
        outcome = train_block(text, round_, block, global_state, states)
        for k in block:
            result = outcome.clients[k]
            if isinstance(result, BaseException):
                results[k] = {"error": f"{type(result).__name__}: {result}"}
                continue
            results[k] = {
                "num_examples": int(result.num_examples),
                "metrics": {m: float(v) for m, v in result.metrics.items()},
            }
            client_states.append(result.client_state)
        if outcome.partial is None:
            continue
        if len(block) == 1:  # half the bytes: the float32 update, not the float64 partial
            singles.append(outcome.clients[block[0]].update)  # type: ignore[union-attr]
            single_blocks.append(int(b))
        else:
            partials.append(outcome.partial)
            partial_blocks.append(int(b))
    results[-1] = {"partial-blocks": partial_blocks, "single-blocks": single_blocks}
    arrays = {"partials": partials, "singles": singles, "states": client_states}
    return _reply(msg, results, arrays)


@client_app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Personalised evaluation of every partition of the cohort (per-class hit counts)."""
    text, round_, ids, global_state, states = _cohort(msg)
    results: dict[int, Any] = {}
    for k in ids:
        try:
            hits = client_evaluate(text, k, round_, global_state, states.get(k))
        except Exception as exc:
            results[k] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        results[k] = {"hits": {m: [int(v) for v in h] for m, h in hits.items()}}
    return _reply(msg, results, {})


# ----------------------------------------------------------------------- server side
def _remote_error(reason: str) -> RemoteClientError:
    return RemoteClientError(reason)


class GridExecutor:
    """Sends each round's cohorts through a Flower ``Grid`` and yields results as they come.

    ``pool_size``: the number of nodes to wait for (simulation); None waits for at least one
    and then uses every node that is connected. ``planner`` spreads a round's blocks of
    clients over the nodes (longest-processing-time first by default). ``new_aggregation``
    makes the strategy's empty aggregation (own-data placement re-assembles blocks with it).
    """

    def __init__(
        self,
        grid: Grid,
        text: str,
        num_clients: int,
        client_sizes: Mapping[int, int],
        round_timeout: float,
        *,
        stop: StopRequest | None = None,
        placement: Placement = "auto",
        pool_size: int | None = None,
        startup_timeout: float = 600.0,
        planner: CohortPlanner = assign_cohorts,
        new_aggregation: Callable[[], Aggregation] | None = None,
    ) -> None:
        self.grid = grid
        self.text = text
        self.timeout = round_timeout
        self.stop = stop or StopRequest()
        self.sizes = dict(client_sizes)
        self.planner = planner
        self.new_aggregation = new_aggregation or (lambda: Aggregation({}))
        deadline = time.monotonic() + startup_timeout
        nodes = self._warm_up(self._wait_for_nodes(pool_size or 1, deadline), deadline)
        own = {p: n for n, (p, total) in nodes.items() if total == num_clients and p >= 0}
        if placement == "auto":
            placement = "own-data" if len(own) == len(nodes) and nodes else "pool"
        self.placement = placement
        if placement == "own-data":
            while len(own) < num_clients and time.monotonic() < deadline:
                if self.stop.wait(0.5):
                    break
                new = set(self.grid.get_node_ids()) - set(nodes)
                for n, info in self._warm_up(sorted(new), deadline).items():
                    nodes[n] = info
                    own[info[0]] = n
            missing = sorted(set(range(num_clients)) - set(own))
            if missing and not self.stop.is_set():
                raise RunError(
                    f"{len(own)} of {num_clients} SuperNodes with their own partition connected "
                    f"within {startup_timeout:.0f} s; missing partitions {missing[:10]} "
                    f"(data.partition.num_clients = {num_clients})"
                )
            self.node_of_partition = own
        self.node_ids = sorted(nodes)

    @classmethod
    def for_engine(cls, grid: Grid, engine: Any, **options: Any) -> GridExecutor:
        """The executor for a prepared :class:`~fedlt.federated.engine.FederatedEngine`:
        its config text, partition sizes, round timeout, stop request and aggregation."""
        cfg = engine.cfg
        return cls(
            grid,
            engine.text,
            cfg.data.partition.num_clients,
            engine.client_sizes,
            cfg.federated.round_timeout,
            stop=engine.stop,
            new_aggregation=lambda: engine.strategy.start_aggregation({}),
            **options,
        )

    # -- start-up -----------------------------------------------------------------
    def _wait_for_nodes(self, count: int, deadline: float) -> list[int]:
        """Nodes register asynchronously: wait until ``count`` are connected."""
        while True:
            node_ids = sorted(self.grid.get_node_ids())
            if len(node_ids) >= count or self.stop.is_set():
                return node_ids
            if time.monotonic() > deadline:
                raise RunError(
                    f"only {len(node_ids)} of {count} Flower SuperNodes connected in time"
                )
            self.stop.wait(0.1)

    def _warm_up(self, node_ids: list[int], deadline: float) -> dict[int, tuple[int, int]]:
        """Build every node's runtime; returns node id -> (partition-id, num-partitions)."""
        messages = [
            Message(
                RecordDict({"config": ConfigRecord({CONFIG_KEY: self.text})}),
                dst_node_id=n,
                message_type=MessageType.QUERY,
                group_id="warm-up",
            )
            for n in node_ids
        ]
        nodes: dict[int, tuple[int, int]] = {}
        for reply, _ in self._exchange(messages, list(node_ids), deadline):
            if reply.has_error():
                raise RunError(f"a SuperNode failed to start: {reply.error.reason}")
            node = reply.content["node"]
            nodes[reply.metadata.src_node_id] = (
                int(node[PARTITION_KEY]),
                int(node[NUM_PARTITIONS_KEY]),
            )
        return nodes

    # -- messaging ----------------------------------------------------------------
    def _exchange(
        self, messages: list[Message], tags: list[Any], deadline: float
    ) -> Iterator[tuple[Message, Any]]:
        """Push ``messages``; yield (reply, tag of its message) as replies arrive, until all
        arrived, the deadline passed or a stop was requested."""
        ids = list(self.grid.push_messages(messages))
        tag_of = dict(zip(ids, tags, strict=True))
        while tag_of and time.monotonic() < deadline and not self.stop.is_set():
            for reply in self.grid.pull_messages(list(tag_of)):
                tag = tag_of.pop(reply.metadata.reply_to_message_id, None)
                if tag is not None:
                    yield reply, tag
            if tag_of:
                self.stop.wait(PULL_INTERVAL_S)

    def _messages(
        self,
        kind: str,
        round_: int,
        cohorts: list[tuple[int, list[list[int]], list[int]]],
        global_state: StateDict,
        state_of: StateOf,
    ) -> list[Message]:
        """One message per (node, blocks of clients, block ids)."""
        global_record, global_layout = pack_record([global_state])
        messages = []
        for node, blocks, block_ids in cohorts:
            cohort = [k for block in blocks for k in block]
            with_state = [(k, st) for k in cohort if (st := state_of(k))]
            states_record, states_layout = pack_record([st for _, st in with_state])
            config = {
                CONFIG_KEY: self.text,
                "round": round_,
                PARTITIONS_KEY: cohort,
                "block-ids": block_ids,
                "block-sizes": [len(b) for b in blocks],
                "global-layout": global_layout,
                "state-ids": [k for k, _ in with_state],
                "state-layout": states_layout,
            }
            content = RecordDict(
                {"config": ConfigRecord(config), "global": global_record, "states": states_record}
            )
            messages.append(
                Message(content, dst_node_id=node, message_type=kind, group_id=str(round_))
            )
        return messages

    def _plan(self, blocks: list[list[int]]) -> list[tuple[int, list[list[int]], list[int]]]:
        """(node, its blocks, their indices): in the pool, blocks spread over the nodes by
        the planner (work = training samples); with own data, each client to its own node
        as a block of one (re-assembled into the engine's blocks by :meth:`_own_data_blocks`)."""
        if self.placement == "own-data":
            return [
                (self.node_of_partition[k], [[k]], [0])  # block 0 of its own message
                for block in blocks
                for k in block
                if k in self.node_of_partition
            ]
        work = {b: sum(self.sizes.get(k, 0) for k in block) for b, block in enumerate(blocks)}
        cohorts = self.planner(list(range(len(blocks))), work, len(self.node_ids))
        return [
            (node, [blocks[b] for b in cohort], cohort)
            for node, cohort in zip(self.node_ids, cohorts, strict=False)
        ]

    def _exchange_cohorts(
        self,
        kind: str,
        round_: int,
        plan: list[tuple[int, list[list[int]], list[int]]],
        global_state: StateDict,
        state_of: StateOf,
    ) -> Iterator[tuple[list[int], dict[str, Any] | BaseException, RecordDict | None]]:
        """Yield (clients of the cohort, its results JSON or error, reply content)."""
        messages = self._messages(kind, round_, plan, global_state, state_of)
        cohorts = [[k for block in blocks for k in block] for _, blocks, _ in plan]
        deadline = time.monotonic() + self.timeout
        for reply, cohort in self._exchange(messages, cohorts, deadline):
            if reply.has_error():
                yield cohort, _remote_error(f"the node failed: {reply.error.reason}"), None
                continue
            yield cohort, json.loads(str(reply.content["config"]["results"])), reply.content

    def train(
        self, round_: int, blocks: list[list[int]], global_state: StateDict, state_of: StateOf
    ) -> Iterator[tuple[int, BlockResult]]:
        plan = self._plan(blocks)
        replies = self._exchange_cohorts(MessageType.TRAIN, round_, plan, global_state, state_of)
        block_of = {k: b for b, block in enumerate(blocks) for k in block}
        if self.placement == "own-data":
            yield from self._own_data_blocks(blocks, block_of, replies)
            return
        for cohort, results, content in replies:
            yield from self._block_results(cohort, results, content, block_of)

    def _block_results(
        self,
        cohort: list[int],
        results: dict[str, Any] | BaseException,
        content: RecordDict | None,
        block_of: Mapping[int, int],
    ) -> Iterator[tuple[int, BlockResult]]:
        """The BlockResults of one cohort reply (every block of it, failed ones included)."""
        blocks: dict[int, list[int]] = {}
        for k in cohort:
            blocks.setdefault(block_of[k], []).append(k)
        if isinstance(results, BaseException) or content is None:
            for b, block in blocks.items():
                yield b, BlockResult({k: results for k in block}, None)  # type: ignore[misc]
            return
        config = content["config"]
        partials = dict(
            zip(
                results["-1"]["partial-blocks"],
                unpack_record(content["partials"], str(config["partials-layout"])),
                strict=True,
            )
        )
        singles = dict(
            zip(
                results["-1"]["single-blocks"],
                unpack_record(content["singles"], str(config["singles-layout"])),
                strict=True,
            )
        )
        states = iter(unpack_record(content["states"], str(config["states-layout"])))
        for b, block in blocks.items():
            clients: dict[int, LocalResult | BaseException] = {}
            for k in block:
                entry = results.get(str(k))
                if entry is None:
                    clients[k] = _remote_error("the node's reply omits this client")
                elif "error" in entry:
                    clients[k] = _remote_error(entry["error"])
                else:
                    clients[k] = LocalResult(
                        update={},
                        num_examples=int(entry["num_examples"]),
                        client_state=_cloned(next(states)),
                        metrics={m: float(v) for m, v in entry["metrics"].items()},
                    )
            if b in singles:  # rebuild the block's partial from its one update, exactly
                [k] = block
                aggregation = self.new_aggregation()
                aggregation.add(LocalResult(singles[b], clients[k].num_examples))  # type: ignore[union-attr]
                partials[b] = aggregation.partial()
            if b not in partials and any(isinstance(c, LocalResult) for c in clients.values()):
                clients = {
                    k: _remote_error("no partial sum came back for its block") for k in block
                }
            yield b, BlockResult(clients, partials.get(b))

    def _own_data_blocks(
        self,
        blocks: list[list[int]],
        block_of: Mapping[int, int],
        replies: Iterator[tuple[list[int], dict[str, Any] | BaseException, RecordDict | None]],
    ) -> Iterator[tuple[int, BlockResult]]:
        """Nodes with their own data train one client each: put the engine's blocks back
        together from the clients' single-client partials, merged in id order (the same sums
        as a worker training the whole block: ``0 + w·x`` is exactly ``w·x``)."""
        arrived: dict[int, dict[int, BlockResult]] = {}
        for cohort, results, content in replies:
            for _, single in self._block_results(cohort, results, content, {cohort[0]: 0}):
                b = block_of[cohort[0]]
                arrived.setdefault(b, {})[cohort[0]] = single
                if len(arrived[b]) < len(blocks[b]):
                    continue
                parts = arrived.pop(b)
                aggregation = self.new_aggregation()
                clients: dict[int, LocalResult | BaseException] = {}
                for k in blocks[b]:
                    clients.update(parts[k].clients)
                    if parts[k].partial is not None:
                        aggregation.merge(parts[k].partial)
                yield b, BlockResult(clients, aggregation.partial() if aggregation.count else None)

    def evaluate(
        self, round_: int, client_ids: list[int], global_state: StateDict, state_of: StateOf
    ) -> Iterator[tuple[int, EvalOutcome]]:
        plan = self._plan([[k] for k in client_ids])
        for cohort, results, _ in self._exchange_cohorts(
            MessageType.EVALUATE, round_, plan, global_state, state_of
        ):
            for k in cohort:
                if isinstance(results, BaseException):
                    yield k, results
                    continue
                entry = results.get(str(k))
                if entry is None or "error" in entry:
                    yield k, _remote_error((entry or {}).get("error", "no result for this client"))
                else:
                    yield k, {m: np.asarray(v, dtype=np.int64) for m, v in entry["hits"].items()}


def make_server_app(main: Callable[[Grid], None]) -> ServerApp:
    """A ServerApp whose main runs ``main(grid)`` (closure over a prepared engine)."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        main(grid)

    return app


server_app = ServerApp()


def resolve_run_config_path(value: Any) -> Path:
    """The experiment file named by ``fedlt-config`` in the run config, which must exist."""
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise ConfigError(
            CONFIG_KEY,
            f"experiment file {str(path)!r} not found (working directory {Path.cwd()}); "
            "give the path of a YAML file, e.g. "
            "--run-config 'fedlt-config=\"simulations/default.yaml\"'",
        )
    return path


@server_app.main()
def _flwr_run_main(grid: Grid, context: Context) -> None:
    """Entry point for ``flwr run .``: the config path comes from the run config. The run is
    validated (and its data built) before its directory is made, as with ``fedlt run``."""
    from fedlt.config import load_config
    from fedlt.federated.engine import FederatedEngine
    from fedlt.preflight import preflight
    from fedlt.runs import RunDirectory

    log = logging.getLogger("fedlt")
    path = resolve_run_config_path(context.run_config.get(CONFIG_KEY, "simulations/default.yaml"))
    cfg = load_config(path)
    cfg.logging.progress = False
    preflight(cfg)
    run = RunDirectory.create(cfg)
    log.warning("fedlt run directory: %s", run.path.resolve())
    with run.supervised():
        engine = FederatedEngine.for_run(run, progress=False)
        executor = GridExecutor.for_engine(grid, engine)
        engine.run_rounds(executor)
    log.warning(
        "fedlt run complete (%s placement over %d SuperNodes): %s",
        executor.placement,
        len(executor.node_ids),
        run.path.resolve(),
    )
