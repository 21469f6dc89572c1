"""``data.rng: fedloge-official``: the data draws of the official FedLoGe code, draw for draw.

Xiao et al., "FedLoGe: Joint Local and Generic Federated Learning under Long-tailed Data",
ICLR 2024; the official code (ZackZikaiXiao/FedLoGe) draws everything from numpy's global
legacy generator, in this order (docs/partition.md, "Official draws"):

1. the long tail, after ``np.random.seed(0)`` (whatever the run seed): for each class c in
   class order, shuffle the indices of c (in array order), keep the first ``n_c``; the kept
   images form the new training array class block by class block, in that shuffled order;
2. the partition, after ``np.random.seed(run_seed)``: one ``binomial(1, 1, (N, C))`` draw
   (always all ones), then for each class c ``q ~ dirichlet([α]·N)`` and
   ``choice(N, size=n_c, p=q)``, one client per sample of c in array order;
3. the local test sets, continuing that stream: client by client, class by class,
   ``choice(test indices of c, m[k, c], replace=False)`` (zero counts included: a legacy
   ``choice`` without replacement draws a full permutation even for size 0);
4. SSE-C, continuing it again (:mod:`strategies.federated.sse_c`).

Here each stream is a ``numpy.random.RandomState`` seeded as the official code seeds the
global state (:mod:`fedlt.seeding`), so the draws are the official ones while the real
global state is never touched. Index sets are the official ones; they are stored sorted
(the official code keeps them in Python sets).
"""

from __future__ import annotations

import numpy as np

from fedlt.config import LongTailConfig
from fedlt.data.client_testsets import local_test_quota
from fedlt.data.longtail import class_targets
from fedlt.data.partition import group_by_client
from fedlt.seeding import fedloge_longtail_stream


def fedloge_longtail(labels: np.ndarray, cfg: LongTailConfig) -> np.ndarray:
    """Draw 1: indices into ``labels`` of the kept images, in the official order.

    Counts: :func:`~fedlt.data.longtail.longtail_counts` with ``n_max`` the largest class
    (the official ``len(data) / C`` on the balanced CIFAR sets). Every class is shuffled,
    also under ``profile: none`` (the official IF=1 run keeps all images, reordered).
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, targets = class_targets(labels, cfg)
    stream = fedloge_longtail_stream()
    kept = []
    for c in np.unique(labels):  # the official loop runs over the classes present
        members = np.flatnonzero(labels == c)
        stream.shuffle(members)
        kept.append(members[: int(targets[c])])
    return np.concatenate(kept).astype(np.int64)


def fedloge_dirichlet(
    labels: np.ndarray,
    num_classes: int,
    num_clients: int,
    alpha: float,
    stream: np.random.RandomState,
) -> list[np.ndarray]:
    """Draw 2: the official per-sample Dirichlet partition (``stream`` advances).

    The class-choice matrix ``binomial(1, 1, (N, C))`` is drawn (it consumes one uniform per
    entry) and is all ones, so every class is spread over all N clients.
    """
    labels = np.asarray(labels)
    stream.binomial(1, 1, size=(num_clients, num_classes))
    owner = np.zeros(len(labels), dtype=np.int64)
    clients = np.arange(num_clients)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        q = stream.dirichlet([alpha] * num_clients)
        owner[members] = stream.choice(clients, size=len(members), p=q)
    return group_by_client(owner, num_clients)


def fedloge_local_tests(
    client_class_counts: np.ndarray, test_labels: np.ndarray, stream: np.random.RandomState
) -> list[np.ndarray]:
    """Draw 3: the clients' local test sets (``stream`` advances).

    ``m[k, c] = int(n_train[k, c] / N_train_total · N_test_total)`` images of class c, drawn
    without replacement from the test images of c (in array order). When ``m[k, c]`` exceeds
    the ``a_c`` images that exist, the official CIFAR-100 code draws all ``a_c`` and then
    ``m[k, c] − a_c`` more (duplicates collapse in its set); both draws are made here, so the
    stream stays official, and the set is all ``a_c`` images (the second draw is capped at
    ``a_c``, where the official code would raise).
    """
    counts = np.asarray(client_class_counts, dtype=np.int64)
    quota, by_class = local_test_quota(counts, test_labels)
    num_clients, num_classes = counts.shape
    out = []
    for k in range(num_clients):
        chosen = []
        for c in range(num_classes):
            wanted = int(quota[k, c])
            available = len(by_class[c])
            chosen.append(stream.choice(by_class[c], min(wanted, available), replace=False))
            if wanted > available:
                stream.choice(by_class[c], min(wanted - available, available), replace=False)
        out.append(np.unique(np.concatenate(chosen)).astype(np.int64))
    return out
