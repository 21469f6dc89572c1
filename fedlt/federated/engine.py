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

import json
import math
import os
import signal
import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch

from fedlt.errors import RunError
from fedlt.evaluation.federated import generic_metrics, personal_metrics
from fedlt.federated.runtime import FederatedRuntime, client_train, config_text, get_runtime
from fedlt.federated.sampling import sample_clients
from fedlt.federated.state_store import ClientStateStore
from fedlt.progress import progress_bar
from fedlt.runs import RunDirectory
from strategies.federated.base import LocalResult, StateDict

ClientOutcome = LocalResult | BaseException


class TrainExecutor(Protocol):
    """Runs the local updates of one round; returns each client's result or its error."""

    def train(
        self,
        round_: int,
        client_ids: list[int],
        global_state: StateDict,
        client_states: Mapping[int, StateDict | None],
    ) -> dict[int, ClientOutcome]: ...


class InProcessExecutor:
    """Local updates one after another in this process (no Flower, no Ray)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def train(
        self,
        round_: int,
        client_ids: list[int],
        global_state: StateDict,
        client_states: Mapping[int, StateDict | None],
    ) -> dict[int, ClientOutcome]:
        out: dict[int, ClientOutcome] = {}
        for k in client_ids:
            try:
                out[k] = client_train(self.text, k, round_, global_state, client_states.get(k))
            except Exception as exc:  # a failing client must not stop the round
                out[k] = exc
        return out


def _class_groups(runtime: FederatedRuntime) -> dict[str, dict[str, list[int]]]:
    from fedlt.data.federated import class_groups

    return class_groups(runtime.data.class_counts)


class FederatedEngine:
    """Round loop with evaluation, run-directory logging and exact resume."""

    def __init__(self, run: RunDirectory, progress: bool = True) -> None:
        self.run = run
        self.cfg = run.config
        self.text = config_text(self.cfg)
        self.runtime = get_runtime(self.text)
        self.strategy = self.runtime.strategy
        self.store = ClientStateStore(run.path / "client_state")
        self.progress = progress
        self.groups = _class_groups(self.runtime)
        self._kept_snapshots: list[dict[int, int]] = []

    # -- evaluation -----------------------------------------------------------------
    def evaluate(self, round_: int, global_state: StateDict) -> tuple[dict[str, float], dict]:
        rt = self.runtime
        num_classes = rt.data.num_classes
        generic, per_class = generic_metrics(
            rt.generic_logits(global_state), rt.t.test_y, self.groups, num_classes
        )
        client_logits: dict[int, dict[str, torch.Tensor]] = {}
        client_labels: dict[int, torch.Tensor] = {}
        for k, test_idx in enumerate(rt.data.client_test_indices):
            if len(test_idx) == 0 or len(rt.data.client_indices[k]) == 0:
                continue
            client_logits[k] = rt.personal_logits(k, round_, global_state, self.store.get(k))
            client_labels[k] = torch.from_numpy(rt.data.test.labels[test_idx].astype(np.int64))
        personal = personal_metrics(
            client_logits,
            client_labels,
            self.groups,
            num_classes,
            self.cfg.federated.mask_absent_classes,
        )
        return {**generic, **personal}, per_class

    # -- checkpoints ----------------------------------------------------------------
    def _checkpoint(self, round_: int, global_state: StateDict) -> None:
        snapshot = self.store.snapshot()
        self.run.save_checkpoint(
            {
                "round": round_,
                "global_state": global_state,
                "client_state_index": snapshot,
                # Client generators are derived from (seed, round, client), so these global
                # states are not needed for exactness; saved so nothing is lost.
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
            },
            step=round_,
        )
        self._kept_snapshots = [*self._kept_snapshots, snapshot][-2:]
        self.store.collect_garbage(self._kept_snapshots)

    def _read_timings(self) -> list[dict[str, float]]:
        """Per-round timings of an earlier (interrupted) session of this run, if any."""
        path = self.run.path / "timings.json"
        return json.loads(path.read_text()) if path.is_file() else []

    def _write_partition(self) -> None:
        d = self.runtime.data
        self.run.write_json(
            "partition.json",
            {
                "num_clients": d.num_clients,
                "class_counts": d.class_counts.tolist(),
                "client_class_counts": d.client_class_counts.tolist(),
                "client_test_sizes": [len(i) for i in d.client_test_indices],
                "empty_clients": list(d.empty_clients),
                "client_indices": [i.tolist() for i in d.client_indices],
            },
        )

    # -- the loop -------------------------------------------------------------------
    def run_rounds(self, executor: TrainExecutor) -> dict[str, Any]:
        cfg, f = self.cfg, self.cfg.federated
        started = time.time()
        loaded = self.run.load_checkpoint()
        if loaded is not None:
            state, start_round = loaded
            global_state = state["global_state"]
            self.store.restore(state["client_state_index"])
            self._kept_snapshots = [self.store.snapshot()]
        else:
            start_round = 0
            global_state = self.strategy.init_global_state()
            self._write_partition()
            self._checkpoint(0, global_state)
        eligible = self.runtime.eligible_clients()
        last_eval: dict[str, float] = {}
        last_per_class: dict = {}
        generic_head = f"generic.{self.strategy.generic_modes[0]}.top1"
        personal_head = f"personal.{self.strategy.personal_modes[0]}.top1_mean"
        timings = [t for t in self._read_timings() if t["round"] <= start_round]
        with progress_bar(
            f"{cfg.name} [{cfg.strategy.name}]", f.rounds, self.progress, start=start_round
        ) as bar:
            for round_ in range(start_round + 1, f.rounds + 1):
                t0 = time.perf_counter()
                sampled = sample_clients(eligible, f.participation, cfg.seed, round_)
                states = {k: self.store.get(k) for k in sampled}
                outcomes = executor.train(round_, sampled, global_state, states)
                ok = [(k, o) for k in sampled if isinstance(o := outcomes.get(k), LocalResult)]
                failed = {
                    k: _describe_failure(outcomes.get(k)) for k in sampled if k not in dict(ok)
                }
                if len(failed) > f.max_failure_fraction * len(sampled) or not ok:
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
                for k, result in ok:
                    self.store.put(k, result.client_state, round_)
                global_state = self.strategy.aggregate(global_state, [r for _, r in ok])
                train_time = time.perf_counter() - t0
                record: dict[str, Any] = {
                    "round": round_,
                    "clients": sampled,
                    "failed": {str(k): v for k, v in failed.items()},
                    "train_loss": _weighted_metric(ok, "train_loss"),
                }
                for key in sorted({m for _, r in ok for m in r.metrics} - {"train_loss"}):
                    record[key] = _weighted_metric(ok, key)  # e.g. FedLoGe's loss_psi
                if round_ % f.eval_every == 0 or round_ == f.rounds:
                    last_eval, last_per_class = self.evaluate(round_, global_state)
                    record.update(last_eval)
                self.run.log_metrics(record)
                _maybe_kill_for_test(round_)
                if round_ % f.checkpoint_every == 0 or round_ == f.rounds:
                    self._checkpoint(round_, global_state)
                timings.append(
                    {"round": round_, "train_s": train_time, "total_s": time.perf_counter() - t0}
                )
                if round_ % f.checkpoint_every == 0:
                    self.run.write_json("timings.json", timings)
                status = f"loss {record['train_loss']:.3f}"
                if generic_head in record:
                    status += f" · generic {100 * record[generic_head]:.1f}%"
                if personal_head in record:
                    status += f" · personal {100 * record[personal_head]:.1f}%"
                bar.update(completed=round_, status=status)
        if not last_eval:  # resumed after the last round: evaluate the final state again
            last_eval, last_per_class = self.evaluate(f.rounds, global_state)
        self.run.write_json("timings.json", timings)
        summary = {
            "engine": "federated",
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
        from fedlt.federated.plots import plot_accuracy

        plot_accuracy(
            self.run.read_metrics(), summary["headline"], self.run.figure_path("accuracy")
        )
        self.run.write_summary(summary)
        return summary


def _maybe_kill_for_test(round_: int) -> None:
    """Fault injection for the exact-resume test: ``FEDLT_FAULT_KILL_AT_ROUND=r`` SIGKILLs
    this process right after round r's metrics are logged (before its checkpoint)."""
    target = os.environ.get("FEDLT_FAULT_KILL_AT_ROUND")
    if target is not None and int(target) == round_:
        os.kill(os.getpid(), signal.SIGKILL)


def _describe_failure(outcome: Any) -> str:
    if outcome is None:
        return "no reply (timed out or lost)"
    if isinstance(outcome, BaseException):
        return f"{type(outcome).__name__}: {outcome}"
    return str(outcome)


def _weighted_metric(ok: list[tuple[int, LocalResult]], key: str) -> float:
    pairs = [(r.metrics[key], r.num_examples) for _, r in ok if key in r.metrics]
    total = sum(n for _, n in pairs)
    if not pairs or total == 0:
        return math.nan
    return float(sum(v * n for v, n in pairs) / total)
