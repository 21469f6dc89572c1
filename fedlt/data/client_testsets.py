"""Per-client local (personalised) test sets drawn from the balanced test set (FedLoGe,
Xiao et al., ICLR 2024; docs/partition.md)."""

from __future__ import annotations

import numpy as np


def local_test_quota(
    client_class_counts: np.ndarray, test_labels: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The local-test rule shared by fedlt's and the official draws:
    ``m[k, c] = int(n_train[k, c] / N_train_total * N_test_total)`` (a clients × classes int
    array), and the test-set indices of every class in array order."""
    counts = np.asarray(client_class_counts, dtype=np.int64)
    test_labels = np.asarray(test_labels)
    total_train = int(counts.sum())
    if total_train:
        wanted = (counts / total_train * len(test_labels)).astype(np.int64)
    else:
        wanted = np.zeros_like(counts)
    by_class = [np.flatnonzero(test_labels == c) for c in range(counts.shape[1])]
    return wanted, by_class


def local_test_indices(
    client_class_counts: np.ndarray, test_labels: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """Indices into the test set for each client's local test set.

    Client k receives, for every class c,

        m[k, c] = int(n_train[k, c] / N_train_total * N_test_total)

    test images of class c drawn without replacement (capped at the number of test images
    of c), so its local test set mirrors its training label mix at the global test/train
    ratio. Different clients draw independently, so their local test sets may overlap.
    The official FedLoGe CIFAR-100 code collapses duplicate indices when ``m[k, c]`` exceeds
    the 100 test images of a class; we cap ``m[k, c]`` at the number available instead (a
    noted deviation: same images, no silent duplicates).
    """
    counts = np.asarray(client_class_counts, dtype=np.int64)
    wanted, by_class = local_test_quota(counts, test_labels)
    out = []
    for k in range(counts.shape[0]):
        chosen = []
        for c in np.flatnonzero(counts[k]):
            take = min(int(wanted[k, c]), len(by_class[c]))
            if take:
                chosen.append(rng.choice(by_class[c], size=take, replace=False))
        out.append(np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64))
    return [part.astype(np.int64) for part in out]
