"""The federated continual round loop (docs/federated_continual.md).

The federated engine's loop (:class:`~fedlt.federated.engine.FederatedEngine`: sampling,
blocks, Flower+Ray or in-process executors, checkpoints, exact resume) with three changes:

- **Eligibility**: client k may be sampled while its stream has samples left
  (``p_k < n_k``); the round its stream ends is recorded (``summary.streams_ended``). When
  no client is left the run ends early (with a warning), evaluated and checkpointed.
- **Evaluation** every ``eval_every`` rounds, at the end of each of the K *phases* (rounds
  ``⌈t·R/K⌉``, t = 1..K, K = ``stream.num_tasks``) and after the last round:

  - *generic*: the global model on the balanced test images of the classes exposed to any
    client so far, ``U = ∪_k E_k`` (logits of classes outside U at −inf); many/medium/few
    of the global long tail over the exposed classes;
  - *personal*: on each client's local test images of its own exposed classes E_k (logits
    outside E_k at −inf), the mean over clients as in the federated engine.

- **Anytime metrics** (Koh et al. 2022; Moon et al. 2023; :mod:`fedlt.evaluation.continual`)
  over rounds, from the headline accuracies: ``A_auc`` = mean over all evaluations,
  ``A_avg`` = mean over the phase ends, ``A_last`` = the last, ``F_last`` = mean forgetting
  of the classes at the phase ends (generic; per-class accuracies of the exposed classes).

Client positions are the clients' own (``fcl.position`` in their client state); the server
keeps a copy, taken from each successful client's result, in every checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from fedlt.evaluation.continual import continual_metrics
from fedlt.evaluation.federated import generic_metrics, personal_metrics_from_hits
from fedlt.federated.engine import ClientExecutor, FederatedEngine
from fedlt.federated_continual.online import position_of
from fedlt.federated_continual.runtime import mask_unexposed_logits
from fedlt.runs import warn
from strategies.federated.base import LocalResult, StateDict

PER_CLIENT_LIMIT = 500
"""Up to this many clients, evaluation records hold per-client accuracies and exposure."""


def phase_end_rounds(rounds: int, num_tasks: int) -> list[int]:
    """Rounds ``⌈t·R/K⌉`` for t = 1..K (distinct, increasing)."""
    return sorted({math.ceil(t * rounds / num_tasks) for t in range(1, num_tasks + 1)})


def anytime_metrics(records: list[dict[str, Any]], key: str, with_forgetting: bool) -> dict:
    """A_auc / A_avg / A_last (and F_last) of the evaluation records' ``key`` accuracy."""
    history: list[dict[str, Any]] = []
    for record in records:
        if record.get(key) is None:
            continue
        history.append({"kind": "periodic", "acc": record[key]})
        if record.get("phase_end"):
            per_class = record.get("per_class", {}) if with_forgetting else {}
            history.append({"kind": "task_end", "acc": record[key], "per_class": per_class})
    metrics = continual_metrics(history)
    if not with_forgetting:
        metrics.pop("F_last")
    return metrics


class FederatedContinualEngine(FederatedEngine):
    """See the module docstring."""

    engine_name = "federated_continual"

    def __init__(self, run, progress: bool = True, stop=None) -> None:
        super().__init__(run, progress, stop)
        self.streams = self.runtime.streams
        self.num_clients = self.runtime.data.num_clients
        self.positions = np.zeros(self.num_clients, dtype=np.int64)
        self.lengths = np.array([self.streams.length(k) for k in range(self.num_clients)])
        self.ended: dict[int, int] = {}
        self._snapshot: tuple[np.ndarray, dict[int, int]] = (self.positions.copy(), {})
        f = self.cfg.federated
        self.phase_ends = set(phase_end_rounds(f.rounds, self.cfg.stream.num_tasks))
        self.generic_head = f"generic.{self.strategy.generic_modes[0]}.top1"
        self.personal_head = f"personal.{self.strategy.personal_modes[0]}.top1_mean"

    def _warn_short_streams(self) -> None:
        short = [
            k
            for k in range(self.num_clients)
            if 0 < self.lengths[k] <= self.streams.chunk_size(k)
            and self.cfg.stream.samples_per_round is not None
        ]
        if short:
            warn(
                f"{len(short)} client(s) hold no more samples than stream.samples_per_round="
                f"{self.cfg.stream.samples_per_round} (e.g. {short[:5]}): each consumes its "
                "whole stream the first round it is sampled and is not sampled again"
            )

    def _write_partition(self) -> None:
        """``partition.json`` as the federated engine writes it, and ``streams.json``: every
        client's stream (task sizes and classes); at the start of a run, warnings for
        streams shorter than a round's samples and for tasks a client has no sample of
        (its stream skips them: no batch, no task end)."""
        super()._write_partition()
        self._warn_short_streams()
        document = self.streams.describe()
        self.run.write_json("streams.json", document)
        empty = {
            k: entry["empty_tasks"]
            for k, entry in document["clients"].items()
            if entry["empty_tasks"] and entry["length"]
        }
        if empty:
            shown = "; ".join(f"client {k}: tasks {t}" for k, t in list(empty.items())[:3])
            warn(
                f"{len(empty)} of {self.num_clients} clients have no samples in some task "
                f"({shown}{' …' if len(empty) > 3 else ''}); their streams skip those tasks "
                "(no batch, no task end); see streams.json"
            )

    # -- the loop's hooks ---------------------------------------------------------------
    def eligible_clients(self, round_: int) -> list[int]:
        return [int(k) for k in np.flatnonzero(self.positions < self.lengths)]

    def begin_round(self, round_: int) -> None:
        self._snapshot = (self.positions.copy(), dict(self.ended))

    def rollback_round(self) -> None:
        self.positions, self.ended = self._snapshot[0].copy(), dict(self._snapshot[1])

    def commit_round(self, round_: int, ok: list[tuple[int, LocalResult]]) -> None:
        for k, result in ok:
            self.positions[k] = position_of(result.client_state)
            if self.positions[k] >= self.lengths[k]:
                self.ended.setdefault(k, round_)

    def is_eval_round(self, round_: int) -> bool:
        return (
            super().is_eval_round(round_)
            or round_ in self.phase_ends
            or not self.eligible_clients(round_ + 1)
        )

    def _is_last_round(self, round_: int) -> bool:
        return round_ >= self.cfg.federated.rounds or not self.eligible_clients(round_ + 1)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            "stream_positions": torch.from_numpy(self.positions.copy()),
            "streams_ended": {int(k): int(r) for k, r in self.ended.items()},
        }

    def load_checkpoint_extra(self, state: dict[str, Any]) -> None:
        self.positions = state["stream_positions"].numpy().astype(np.int64).copy()
        self.ended = {int(k): int(r) for k, r in state["streams_ended"].items()}

    def no_clients_left(
        self, round_: int, global_state: StateDict, executor: ClientExecutor
    ) -> tuple[dict[str, float], dict]:
        last = round_ - 1
        warn(
            f"every client's stream ended by round {last}; rounds {round_}-"
            f"{self.cfg.federated.rounds} are skipped"
        )
        if self._checkpointed_round != last:
            self._checkpoint(last, global_state)
        evaluated = [r for r in self.run.read_metrics() if self.generic_head in r]
        if evaluated and evaluated[-1]["round"] == last:
            return {
                k: v for k, v in evaluated[-1].items() if k.startswith(("generic.", "personal."))
            }, {}
        return self.evaluate(last, global_state, executor)

    # -- evaluation ---------------------------------------------------------------------
    def exposure(self) -> dict[int, np.ndarray]:
        """Each client's exposed-class mask (clients that have consumed something)."""
        return {
            int(k): self.streams.exposed_mask(int(k), int(self.positions[k]))
            for k in np.flatnonzero(self.positions > 0)
        }

    def evaluate(
        self, round_: int, global_state: StateDict, executor: ClientExecutor | None = None
    ) -> tuple[dict[str, Any], dict]:
        rt = self.runtime
        num_classes = rt.data.num_classes
        exposure = self.exposure()
        union = np.zeros(num_classes, dtype=bool)
        for mask in exposure.values():
            union |= mask
        groups = {
            definition: {g: [c for c in classes if union[c]] for g, classes in by_group.items()}
            for definition, by_group in self.groups.items()
        }
        test_labels = rt.data.test.labels.astype(np.int64)
        keep = np.flatnonzero(union[test_labels])
        if keep.size:
            predictor = self.strategy.generic_predictor(global_state)
            index = torch.from_numpy(keep).to(rt.device)
            logits = rt._logits(predictor, rt.t.test_u8[index])
            exposed = torch.from_numpy(union)
            masked = {m: mask_unexposed_logits(z, exposed) for m, z in logits.items()}
            generic, per_class = generic_metrics(
                masked, torch.from_numpy(test_labels[keep]), groups, num_classes
            )
        else:
            generic = {f"generic.{m}.top1": float("nan") for m in self.strategy.generic_modes}
            per_class = {}
        clients = [k for k in rt.evaluated_clients() if k in exposure]
        hits = self.personal_hits(round_, clients, global_state, executor)
        totals = {}
        for k in hits:
            labels = test_labels[rt.data.client_test_indices[k]]
            labels = labels[exposure[k][labels]]
            totals[k] = np.bincount(labels, minlength=num_classes)
        personal = personal_metrics_from_hits(hits, totals, self.groups)
        headline = f"generic.{self.strategy.generic_modes[0]}"
        record: dict[str, Any] = {
            **generic,
            **personal,
            "phase_end": round_ in self.phase_ends or self._is_last_round(round_),
            "samples_seen": int(self.positions.sum()),
            "num_exposed": int(union.sum()),
            "unexposed_classes": [int(c) for c in np.flatnonzero(~union)],
            "streams_ended": len(self.ended),
            "per_class": {
                str(c): float(a)
                for c, a in enumerate(per_class.get(headline, []))
                if union[c] and not math.isnan(a)
            },
        }
        if self.num_clients <= PER_CLIENT_LIMIT:
            mode = self.strategy.personal_modes[0]
            record["client_streams"] = {
                str(k): {
                    "exposed": int(exposure[k].sum()) if k in exposure else 0,
                    "position": int(self.positions[k]),
                    "acc": (
                        float(hits[k][mode].sum() / totals[k].sum())
                        if k in hits and totals[k].sum()
                        else None
                    ),
                }
                for k in range(self.num_clients)
            }
        return record, per_class

    # -- the end --------------------------------------------------------------------------
    def finish_summary(self, summary: dict[str, Any]) -> None:
        records = [r for r in self.run.read_metrics() if self.generic_head in r]
        generic = anytime_metrics(records, self.generic_head, with_forgetting=True)
        personal = anytime_metrics(records, self.personal_head, with_forgetting=False)
        final = {
            k: v for k, v in summary["final"].items() if k.startswith(("generic.", "personal."))
        }
        final.update(generic)
        final.update({f"personal.{k}": v for k, v in personal.items()})
        summary["final"] = final
        summary["rounds_run"] = int(records[-1]["round"]) if records else 0
        summary["streams_ended"] = {str(k): r for k, r in sorted(self.ended.items())}
        summary["samples"] = int(self.lengths.sum())
        summary["samples_seen"] = int(self.positions.sum())
        summary["task_sync"] = self.cfg.stream.task_sync
        union = np.zeros(self.runtime.data.num_classes, dtype=bool)
        for mask in self.exposure().values():
            union |= mask
        summary["never_exposed_classes"] = [int(c) for c in np.flatnonzero(~union)]
        from fedlt.plots.federated_continual import plot_federated_continual

        plot_federated_continual(
            records,
            summary,
            self.run.figure_path("accuracy"),
            self.run.figure_path("clients"),
            self.run.figure_path("exposure"),
        )
