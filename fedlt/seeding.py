"""Every random stream of a run, derived from the run seed by a named purpose.

Rule. The stream for ``(seed, purpose, i_1, …, i_m)`` (e.g. ``("augment", round, client)``)
comes from numpy's ``SeedSequence`` with

    entropy   = seed                                    (padded by numpy to 4 words)
    spawn_key = (len(b), w_1, …, w_n, m, i_1, …, i_m)

where ``b`` is the UTF-8 encoding of ``purpose`` and ``w_1 … w_n`` are its bytes packed into
little-endian 32-bit words (zero padded). Every field has a fixed width or a length in front
of it, so two different ``(seed, purpose, indices)`` give two different word sequences: no
two purposes, seeds or index tuples share a stream (the old ad-hoc offsets did collide:
``seed + 2`` for augmentation at seed 1 was ``seed + 3`` for the torch RNG at seed 0).
Different word sequences can only meet by a collision of SeedSequence's 128-bit hash.

- :func:`rng`: a ``numpy.random.Generator`` (PCG64) for the purpose;
- :func:`derived_seed`: a 63-bit integer seed (for ``torch.manual_seed``);
- :func:`torch_generator`: a CPU ``torch.Generator`` seeded with :func:`derived_seed`;
- :func:`seeded_torch`: the global torch RNG, forked and seeded for one purpose (model
  initialisation), the caller's state restored afterwards.

:data:`PURPOSES` names every purpose fedlt itself uses (docs/partition.md, "Random streams").

The official-compatible streams live here too (``data.rng: fedloge-official``,
docs/fedloge.md): numpy's *legacy* ``RandomState`` objects seeded exactly as the official
FedLoGe code (Xiao et al., ICLR 2024) seeds numpy's global state, so their draws equal the
official global-state draws while the real global state is never touched; and the
Si-Blurry sampler's ``torch.Generator().manual_seed(seed)`` (Moon et al., ICCV 2023).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a torch stream is made (the config stays light)
    import torch

SEED_LIMIT = 1 << 63  # run seeds: what numpy and torch both accept (fedlt.configtools)
INDEX_LIMIT = 1 << 32  # an index (round, client, task) is one 32-bit word
LEGACY_SEED_LIMIT = 1 << 32  # np.random.seed / RandomState accept 32-bit seeds only

PURPOSES: dict[str, str] = {
    # data (fedlt.data)
    "longtail": "which images the global long tail keeps (data.rng: fedlt)",
    "partition": "the client partition (data.rng: fedlt)",
    "local_test": "the clients' local test sets (data.rng: fedlt)",
    "digits_split": "the train/test split of the digits source",
    "synthetic_images": "the templates and noise of the synthetic source",
    # federated engine (fedlt.federated)
    "client_sampling": "the clients sampled in a round (index: round)",
    "client_train": "a client's local training: batches, augmentation (round, client)",
    "client_eval": "a client's personalised evaluation, e.g. fine-tuning (round, client)",
    # strategies (strategies.federated)
    "model_init": "the initial weights of the model (global RNG, forked)",
    "fedloge_psi": "FedLoGe's initial auxiliary global head ψ",
    "fedloge_phi": "FedLoGe's initial personal head φ_k",
    "sse_c": "the SSE-C matrix: uniform matrix and zero positions (data.rng: fedlt)",
    "sse_c_bias": "the frozen SSE-C bias",
    "fedrod_p_head": "FedRoD's initial personal head",
    "fedetf_etf": "FedETF's fixed ETF",
    "fedetf_proj": "FedETF's initial projection",
    # continual engine (fedlt.continual, strategies.continual)
    "replay_memory": "the replay memory's choices",
    "stream_augment": "the stream engine's crops and flips",
    "learner_torch": "the global torch RNG learners run under (dropout, ...)",
    "learner_cuda": "the CUDA RNG learners run under",
    "prompt_init": "prompt, key and head initialisation of the prompt learners",
    # federated continual engine (fedlt.federated_continual)
    "fcl_task_split": "the class-to-task split all clients share (stream.task_sync: shared)",
    "fcl_stream": "a client's Si-Blurry stream (index: client)",
    "fcl_memory": "a client's replay-memory choices in a round (round, client)",
    "fcl_learner": "the global torch RNG a client's learner runs under (round, client)",
}


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed}")
    return seed


def purpose_words(purpose: str) -> tuple[int, ...]:
    """``(len(b), w_1, …, w_n)``: the byte length of ``purpose`` in UTF-8, then its bytes in
    little-endian 32-bit words (zero padded)."""
    if not purpose:
        raise ValueError("a random stream needs a non-empty purpose name")
    raw = purpose.encode("utf-8")
    padded = raw + b"\0" * (-len(raw) % 4)
    return (len(raw), *(int(w) for w in np.frombuffer(padded, dtype="<u4")))


def seed_sequence(seed: int, purpose: str, *indices: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``(seed, purpose, indices)`` (module docstring for the rule)."""
    words = [int(i) for i in indices]
    bad = [i for i in words if not 0 <= i < INDEX_LIMIT]
    if bad:
        raise ValueError(f"stream indices must lie in [0, 2**32), got {bad[0]} ({purpose!r})")
    key = (*purpose_words(purpose), len(words), *words)
    return np.random.SeedSequence(_check_seed(seed), spawn_key=key)


def rng(seed: int, purpose: str, *indices: int) -> np.random.Generator:
    """A ``numpy.random.Generator`` (PCG64) for one purpose of one run."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, purpose, *indices)))


def derived_seed(seed: int, purpose: str, *indices: int) -> int:
    """A 63-bit integer seed for one purpose: the first 64-bit word of the purpose's
    ``SeedSequence`` state, shifted right by one (``torch.manual_seed`` takes it)."""
    word = seed_sequence(seed, purpose, *indices).generate_state(1, np.uint64)[0]
    return int(word >> np.uint64(1))


def torch_generator(seed: int, purpose: str, *indices: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derived_seed`."""
    import torch

    return torch.Generator().manual_seed(derived_seed(seed, purpose, *indices))


@contextmanager
def seeded_torch(seed: int, purpose: str, *indices: int) -> Iterator[None]:
    """Run the block under the global CPU torch RNG seeded with :func:`derived_seed`
    (e.g. ``nn.Module`` initialisation); the caller's RNG state is restored afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, purpose, *indices))
        yield


# ------------------------------------------------------------------ official-compatible
FEDLOGE_LONGTAIL_SEED = 0
"""The official IMBALANCECIFAR dataset calls ``np.random.seed(0)`` before drawing the long
tail, whatever the run seed."""


def legacy_stream(seed: int) -> np.random.RandomState:
    """numpy's legacy MT19937 generator in the state ``np.random.seed(seed)`` puts the global
    one in, so it draws what the global ``np.random.*`` functions would draw."""
    seed = int(seed)
    if not 0 <= seed < LEGACY_SEED_LIMIT:
        raise ValueError(f"the legacy numpy generator takes seeds in [0, 2**32), got {seed}")
    return np.random.RandomState(seed)


def fedloge_longtail_stream() -> np.random.RandomState:
    """The official FedLoGe long-tail draws: ``np.random.seed(0)`` in IMBALANCECIFAR."""
    return legacy_stream(FEDLOGE_LONGTAIL_SEED)


def fedloge_partition_stream(seed: int) -> np.random.RandomState:
    """The official FedLoGe partition draws: ``np.random.seed(run_seed)`` in
    ``non_iid_dirichlet_sampling``; the local test sets and SSE-C continue this stream."""
    return legacy_stream(seed)


def copy_legacy(stream: np.random.RandomState) -> np.random.RandomState:
    """An independent copy of a legacy generator (same state, own future)."""
    twin = np.random.RandomState()
    twin.set_state(stream.get_state())
    return twin


def legacy_digest(stream: np.random.RandomState) -> str:
    """16 hex digits identifying the state of a legacy generator (a cache key)."""
    name, key, pos, has_gauss, cached = stream.get_state()
    digest = hashlib.sha256(name.encode())
    digest.update(np.asarray(key, dtype="<u4").tobytes())
    digest.update(f"{pos}:{has_gauss}:{float(cached)!r}".encode())
    return digest.hexdigest()[:16]


def si_blurry_generator(seed: int) -> torch.Generator:
    """The Si-Blurry sampler's stream, as the official code (KHU-AGI/Si-Blurry) seeds it:
    ``torch.Generator().manual_seed(seed)`` (docs/continual.md)."""
    import torch

    return torch.Generator().manual_seed(int(seed))
