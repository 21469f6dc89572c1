"""The federated round loop, independent of how client updates are executed.

:class:`FederatedEngine` samples clients, asks an executor for their local updates, stores
their persistent state, aggregates in partition-id order, evaluates, logs, checkpoints and
resumes. Two executors exist: :class:`InProcessExecutor` (a plain loop in this process, used
by benchmarks, sweeps and GPU machines without Ray) and the Flower executor in
:mod:`fedlt.federated.flower_app` (messages to simulated ClientApps on Ray, or to real
SuperNodes). Both end in :func:`fedlt.federated.runtime.client_train`, so they give the same
numbers for the same config.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from fedlt.errors import RunError, RunInterrupted
from fedlt.evaluation.federated import generic_metrics, personal_metrics_from_hits
from fedlt.federated.cohorts import InOrderFold, max_blocks, split_blocks
from fedlt.federated.runtime import (
    BlockResult,
    FederatedRuntime,
    client_evaluate,
    config_text,
    runtime_for,
    train_block,
)
from fedlt.federated.sampling import sample_clients
from fedlt.federated.state_store import ClientStateStore
from fedlt.federated.stopping import StopRequest
from fedlt.progress import progress_bar
from fedlt.runs import RunDirectory
from strategies.federated.base import LocalResult, StateDict

ClientOutcome = LocalResult | BaseException
"""A client's local result (its update summed into its block's partial), or its error."""
EvalOutcome = dict[str, np.ndarray] | BaseException
"""A client's per-class hit counts per personal mode, or the error that stopped it."""
StateOf = Callable[[int], StateDict | None]
"""Reads a client's persistent state (from the state store) when an executor needs it."""


class RemoteClientError(RuntimeError):
    """A client's error as the node that ran it reported it (``Type: message``)."""


class ClientExecutor(Protocol):
    """Runs a round's client work and yields results as they become available, in any order
    (the engine restores partition-id order). Training is by *blocks* of consecutive
    clients (:func:`fedlt.federated.cohorts.split_blocks`): each yields ``(block index,
    BlockResult)``; a block missing from the output counts as lost. Evaluation yields
    ``(client, outcome)``. An executor stops early when the engine's stop request is set."""

    def train(
        self, round_: int, blocks: list[list[int]], global_state: StateDict, state_of: StateOf
    ) -> Iterable[tuple[int, BlockResult]]: ...

    def evaluate(
        self, round_: int, client_ids: list[int], global_state: StateDict, state_of: StateOf
    ) -> Iterable[tuple[int, EvalOutcome]]: ...


class InProcessExecutor:
    """Client work one block after another in this process (no Flower, no Ray).

    ``source``: this process's runtime (what the engine passes), or a config text, looked
    up in (or added to) the process's runtime cache."""

    def __init__(self, source: FederatedRuntime | str) -> None:
        self.source = source

    def train(
        self, round_: int, blocks: list[list[int]], global_state: StateDict, state_of: StateOf
    ) -> Iterator[tuple[int, BlockResult]]:
        for b, block in enumerate(blocks):
            states = {k: state_of(k) for k in block}
            yield b, train_block(self.source, round_, block, global_state, states)

    def evaluate(
        self, round_: int, client_ids: list[int], global_state: StateDict, state_of: StateOf
    ) -> Iterator[tuple[int, EvalOutcome]]:
        for k in client_ids:
            try:
                yield k, client_evaluate(self.source, k, round_, global_state, state_of(k))
            except Exception as exc:
                yield k, exc


def _class_groups(runtime: FederatedRuntime) -> dict[str, dict[str, list[int]]]:
    from fedlt.data.federated import class_groups

    return class_groups(runtime.data.class_counts)


class FederatedEngine:
    """Round loop with evaluation, run-directory logging and exact resume."""

    engine_name = "federated"
    """``summary.json``'s ``engine``; engines built on this loop name themselves."""

    @staticmethod
    def for_run(run: RunDirectory, progress: bool = True) -> FederatedEngine:
        """The engine of the run's config: this one, or the federated continual engine."""
        if run.config.engine == "federated_continual":
            from fedlt.federated_continual.engine import FederatedContinualEngine

            return FederatedContinualEngine(run, progress=progress)
        return FederatedEngine(run, progress=progress)

    def __init__(
        self, run: RunDirectory, progress: bool = True, stop: StopRequest | None = None
    ) -> None:
        self.run = run
        self.cfg = run.config
        self.runtime = runtime_for(self.cfg)
        self.text = config_text(self.cfg)  # what workers receive (Flower messages, Ray tasks)
        self.strategy = self.runtime.strategy
        self.store = ClientStateStore(run.client_state_dir)
        self.progress = progress
        self.stop = stop or StopRequest()
        self.groups = _class_groups(self.runtime)
        self.client_sizes = self.runtime.client_sizes()
        self._kept_snapshots: list[dict[int, int]] = []
        self._checkpointed_round = -1
        self._last_global: StateDict = {}
        self._round_start_index: dict[int, int] = {}
        self.peak_held_partials = 0
        self.server_state: StateDict = {}
        self._next_server_state: StateDict = {}
        self._eligible: list[int] = self.runtime.eligible_clients()

    # -- hooks of engines built on this loop (fedlt.federated_continual) -------------
    def eligible_clients(self, round_: int) -> list[int]:
        """Clients that may be sampled in ``round_`` (here: every client with data)."""
        return self._eligible

    def is_eval_round(self, round_: int) -> bool:
        """Whether ``round_`` ends with an evaluation (every ``eval_every`` and the last)."""
        f = self.cfg.federated
        return round_ % f.eval_every == 0 or round_ == f.rounds

    def begin_round(self, round_: int) -> None:
        """Called before a round trains; remember what :meth:`rollback_round` restores."""

    def rollback_round(self) -> None:
        """The round in progress is discarded (client states restored to its start)."""

    def commit_round(self, round_: int, ok: list[tuple[int, LocalResult]]) -> None:
        """The round's results are accepted (``ok``: its successful clients, id order)."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """Engine state saved in every checkpoint besides the global and server states."""
        return {}

    def load_checkpoint_extra(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`checkpoint_extra` saved."""

    def finish_summary(self, summary: dict[str, Any]) -> None:
        """Add to the summary and draw the figures (called once, after the last round)."""
        from fedlt.federated.plots import plot_accuracy

        plot_accuracy(
            self.run.read_metrics(), summary["headline"], self.run.figure_path("accuracy")
        )

    # -- evaluation -----------------------------------------------------------------
    def evaluate(
        self, round_: int, global_state: StateDict, executor: ClientExecutor | None = None
    ) -> tuple[dict[str, float], dict]:
        """Generic metrics here (the balanced test set), personalised ones from each client's
        per-class hit counts, computed by ``executor`` (the workers) or in this process."""
        rt = self.runtime
        num_classes = rt.data.num_classes
        generic, per_class = generic_metrics(
            rt.generic_logits(global_state), rt.t.test_y, self.groups, num_classes
        )
        hits = self.personal_hits(round_, rt.evaluated_clients(), global_state, executor)
        totals = {
            k: np.bincount(
                rt.data.test.labels[rt.data.client_test_indices[k]].astype(np.int64),
                minlength=num_classes,
            )
            for k in hits
        }
        personal = personal_metrics_from_hits(hits, totals, self.groups)
        return {**generic, **personal}, per_class

    def personal_hits(
        self,
        round_: int,
        clients: list[int],
        global_state: StateDict,
        executor: ClientExecutor | None = None,
    ) -> dict[int, dict[str, np.ndarray]]:
        """Every client's per-class hit counts per personal mode, computed by ``executor``
        (the workers) or in this process; a stop request or a lost client ends the run."""
        executor = executor or InProcessExecutor(self.runtime)
        hits: dict[int, dict[str, np.ndarray]] = {}
        for k, outcome in executor.evaluate(round_, clients, global_state, self.store.get):
            if isinstance(outcome, BaseException):
                raise RunError(
                    f"personalised evaluation of client {k} in round {round_} failed: "
                    f"{_describe_failure(outcome)}"
                )
            hits[k] = outcome
            if self.stop.is_set():
                break
        self._raise_if_stopped(round_ - 1, self._last_global, self._round_start_index)
        lost = sorted(set(clients) - set(hits))
        if lost:
            raise RunError(
                f"personalised evaluation in round {round_}: no result for clients {lost[:5]}"
                f"{' …' if len(lost) > 5 else ''} within federated.round_timeout"
            )
        return hits

    # -- checkpoints ----------------------------------------------------------------
    def _checkpoint(self, round_: int, global_state: StateDict) -> None:
        snapshot = self.store.snapshot()
        self.run.save_checkpoint(
            {
                "round": round_,
                "global_state": global_state,
                "server_state": self.server_state,
                "client_state_index": snapshot,
                **self.checkpoint_extra(),
                # Client generators are derived from (seed, round, client), so these global
                # states are not needed for exactness; saved so nothing is lost.
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
            },
            step=round_,
        )
        self._kept_snapshots = [*self._kept_snapshots, snapshot][-2:]
        self.store.collect_garbage(self._kept_snapshots)
        self._checkpointed_round = round_

    def _raise_if_stopped(
        self, finished_round: int, global_state: StateDict, index: dict[int, int]
    ) -> None:
        """On a stop request: checkpoint the last finished round (client states as they were
        after it), mark the run interrupted and raise :class:`RunInterrupted`."""
        if not self.stop.is_set():
            return
        self.store.restore(index)
        self.rollback_round()
        if self._checkpointed_round != finished_round:
            self._checkpoint(finished_round, global_state)
        name = self.stop.signal_name
        message = (
            f"stopped by {name} after round {finished_round} of {self.cfg.federated.rounds}; "
            f"a checkpoint of round {finished_round} is saved in {self.run.path}. Continue with "
            f"`fedlt run --resume {self.run.path}`."
        )
        self.run.mark_interrupted(message, name)
        raise RunInterrupted(message, self.stop.signum or signal.SIGINT)

    def _write_partition(self) -> None:
        """The run's ``partition.json``, in the schema ``fedlt partition`` writes too, so the
        ``file`` partitioner reads it back (:mod:`fedlt.partition_file`)."""
        from fedlt.partition_file import partition_document, partition_text

        self.run.write_partition(partition_text(partition_document(self.cfg, self.runtime.data)))

    # -- the loop -------------------------------------------------------------------
    def train_round(
        self, executor: ClientExecutor, round_: int, sampled: list[int], global_state: StateDict
    ) -> tuple[StateDict | None, dict[int, str], list[tuple[int, LocalResult]]]:
        """One round's local updates, by blocks of consecutive clients whose partial sums are
        merged in block order as they arrive (only out-of-order partials are held). Returns
        the new global state (None when no client succeeded), the failures, and the
        successful clients' results (sizes, metrics; updates are in the partials)."""
        limit = max_blocks(sum(v.numel() for v in global_state.values()))
        blocks = split_blocks(sampled, self.strategy.start_aggregation({}).mergeable, limit)
        aggregation = self.strategy.start_aggregation(global_state, self.server_state)
        fold: InOrderFold[StateDict] = InOrderFold(
            range(len(blocks)), lambda _b, partial: aggregation.merge(partial)
        )
        pending = set(range(len(blocks)))
        failed: dict[int, str] = {}
        ok: list[tuple[int, LocalResult]] = []
        for b, result in executor.train(round_, blocks, global_state, self.store.get):
            if b not in pending:
                continue  # not asked for, or a duplicate
            pending.discard(b)
            for k in blocks[b]:
                outcome = result.clients.get(k)
                if isinstance(outcome, LocalResult):
                    self.store.put(k, outcome.client_state, round_)
                    ok.append((k, outcome))
                else:
                    failed[k] = _describe_failure(outcome)
            if result.partial is None:
                fold.skip(b)
            else:
                fold.put(b, result.partial)
            if self.stop.is_set():
                break
        for b in sorted(pending):
            if not self.stop.is_set():
                failed.update({k: _describe_failure(None) for k in blocks[b]})
            fold.skip(b)
        self.peak_held_partials = max(self.peak_held_partials, fold.peak_held)
        ok.sort(key=lambda item: item[0])
        failed = dict(sorted(failed.items()))
        if not ok:
            return None, failed, ok
        new_global = aggregation.result()
        self._next_server_state = aggregation.server_state
        return new_global, failed, ok

    def run_rounds(self, executor: ClientExecutor) -> dict[str, Any]:
        cfg, f = self.cfg, self.cfg.federated
        started = time.time()
        loaded = self.run.load_checkpoint()
        if loaded is not None:
            state, start_round = loaded
            global_state = state["global_state"]
            self.server_state = dict(state.get("server_state") or {})
            self.store.restore(state["client_state_index"])
            self.load_checkpoint_extra(state)
            self._kept_snapshots = [self.store.snapshot()]
            self._checkpointed_round = start_round
        else:
            start_round = 0
            global_state = self.strategy.init_global_state()
            self.server_state = self.strategy.init_server_state()
            self._write_partition()
            self._checkpoint(0, global_state)
        last_eval: dict[str, float] = {}
        last_per_class: dict = {}
        generic_head = f"generic.{self.strategy.generic_modes[0]}.top1"
        personal_head = f"personal.{self.strategy.personal_modes[0]}.top1_mean"
        timings = [t for t in self.run.read_timings() if t.get("round", 0) <= start_round]
        with progress_bar(
            f"{cfg.name} [{cfg.strategy.name}]", f.rounds, self.progress, start=start_round
        ) as bar:
            for round_ in range(start_round + 1, f.rounds + 1):
                t0, round_started = time.perf_counter(), time.time()
                before = self.store.snapshot()
                self.begin_round(round_)
                self._last_global, self._round_start_index = global_state, before
                self._raise_if_stopped(round_ - 1, global_state, before)
                eligible = self.eligible_clients(round_)
                if not eligible:
                    last_eval, last_per_class = self.no_clients_left(round_, global_state, executor)
                    break
                sampled = sample_clients(eligible, f.participation, cfg.seed, round_)
                new_global, failed, ok = self.train_round(executor, round_, sampled, global_state)
                self._raise_if_stopped(round_ - 1, global_state, before)
                if len(failed) > f.max_failure_fraction * len(sampled) or new_global is None:
                    self.store.restore(before)
                    self.rollback_round()
                    self._checkpoint(round_ - 1, global_state)
                    message = (
                        f"round {round_}: {len(failed)} of {len(sampled)} clients failed "
                        f"(more than federated.max_failure_fraction={f.max_failure_fraction}); "
                        f"first error: {next(iter(failed.values()))}. The run stopped after "
                        f"round {round_ - 1}; fix the cause and continue with "
                        f"`fedlt run --resume {self.run.path}`."
                    )
                    self.run.mark_failed(message)
                    raise RunError(message)
                global_state, self.server_state = new_global, self._next_server_state
                self.commit_round(round_, ok)
                train_time = time.perf_counter() - t0
                record: dict[str, Any] = {
                    "round": round_,
                    "clients": sampled,
                    "failed": {str(k): v for k, v in failed.items()},
                    "train_loss": _weighted_metric(ok, "train_loss"),
                }
                for key in sorted({m for _, r in ok for m in r.metrics} - {"train_loss"}):
                    record[key] = _weighted_metric(ok, key)  # e.g. FedLoGe's loss_psi
                if self.is_eval_round(round_):
                    last_eval, last_per_class = self.evaluate(round_, global_state, executor)
                    record.update(last_eval)
                self.run.log_metrics(record)
                _maybe_kill_for_test(round_)
                if round_ % f.checkpoint_every == 0 or round_ == f.rounds:
                    self._checkpoint(round_, global_state)
                timings.append(
                    {
                        "round": round_,
                        "started": round_started,
                        "train_s": train_time,
                        "total_s": time.perf_counter() - t0,
                    }
                )
                if round_ % f.checkpoint_every == 0:
                    self.run.write_timings(timings)
                status = f"loss {record['train_loss']:.3f}"
                if generic_head in record:
                    status += f" · generic {100 * record[generic_head]:.1f}%"
                if personal_head in record:
                    status += f" · personal {100 * record[personal_head]:.1f}%"
                bar.update(completed=round_, status=status)
        if not last_eval:  # resumed after the last round: evaluate the final state again
            last_eval, last_per_class = self.evaluate(f.rounds, global_state, executor)
        self.run.write_timings(timings)
        summary = {
            "engine": self.engine_name,
            "name": cfg.name,
            "strategy": cfg.strategy.name,
            "seed": cfg.seed,
            "status": "complete",
            "rounds": f.rounds,
            "wall_time_s": time.time() - started,
            "headline": {
                "generic": self.strategy.generic_modes[0],
                "personal": self.strategy.personal_modes[0],
            },
            "final": last_eval,
            "per_class": last_per_class,
            "empty_clients": list(self.runtime.data.empty_clients),
        }
        self.finish_summary(summary)
        self.run.write_summary(summary)
        return summary

    def no_clients_left(
        self, round_: int, global_state: StateDict, executor: ClientExecutor
    ) -> tuple[dict[str, float], dict]:
        """No client may be sampled in ``round_``: the federated engine cannot get here
        (clients with data are always eligible); engines whose clients run out override."""
        raise RunError(f"round {round_}: no client has training data")


def _maybe_kill_for_test(round_: int) -> None:
    """Fault injection for the exact-resume test: ``FEDLT_FAULT_KILL_AT_ROUND=r`` SIGKILLs
    this process right after round r's metrics are logged (before its checkpoint)."""
    target = os.environ.get("FEDLT_FAULT_KILL_AT_ROUND")
    if target is not None and int(target) == round_:
        os.kill(os.getpid(), signal.SIGKILL)


def _describe_failure(outcome: Any) -> str:
    if outcome is None:
        return "no reply (timed out or lost)"
    if isinstance(outcome, RemoteClientError):  # already "Type: message", from its node
        return str(outcome)
    if isinstance(outcome, BaseException):
        return f"{type(outcome).__name__}: {outcome}"
    return str(outcome)


def _weighted_metric(ok: Sequence[tuple[int, LocalResult]], key: str) -> float:
    pairs = [(r.metrics[key], r.num_examples) for _, r in ok if key in r.metrics]
    total = sum(n for _, n in pairs)
    if not pairs or total == 0:
        return math.nan
    return float(sum(v * n for v, n in pairs) / total)
