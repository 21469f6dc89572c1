"""SSE-C: the static sparse equiangular-tight-frame classifier of FedLoGe.

Xiao et al., "FedLoGe: Joint Local and Generic Federated Learning under Long-tailed Data",
ICLR 2024, §4.1 (Static Sparse Equiangular Tight Frame Classifier). Construction, as the
official code computes it (spec ``fedloge.md`` §2), for feature dimension d and C classes:

1. ``P ∈ R^{d×C}``, ``PᵀP = I``: reduced QR of a seeded uniform [0, 1) d×C matrix.
2. Simplex ETF ``M = sqrt(C/(C-1)) · P · (I_C − (1/C)·11ᵀ)``: unit columns, pairwise
   cosine −1/(C−1).
3. Sparsify: a uniformly random ``int(β·d·C)`` of the d·C entries are set to 0.
4. Re-optimise the surviving entries with Adam (lr 1e-4, 10,000 steps; gradient masked so
   zeros stay zero) on
   ``L(W) = Σ_c (‖w_c‖₂ − τ)² − (1/C)·Σ_c arccos(clamp(max_{j≠c} cos(w_c, w_j), ±0.99999))``.

Two ways to draw it (``data.rng``, docs/fedloge.md):

- ``fedlt``: the uniform matrix and the zero positions come from the run seed's ``sse_c``
  stream (:func:`fedlt.seeding.torch_generator`); the matrix is computed in float64 on one
  CPU thread (so every worker and every machine gets the same bits), then cast to float32.
- ``fedloge-official``: as the official code draws it, from its global numpy stream where
  the data draws left it (draw 4 of docs/partition.md, "Official draws"): ``random((d, C))``
  → QR in float64 → float32, the ETF in float32, then ``choice(d·C, int(β·d·C),
  replace=False)`` for the zeros (row-major positions of the d×C matrix); the
  re-optimisation runs in float32 with denormals kept, so exactly ``int(β·d·C)`` entries
  are zero.

The matrix is a deterministic function of ``(d, C, β, τ, steps, lr, seed)`` (and, official,
of the stream's state); 10,000 Adam steps take seconds, so results are cached in memory and
on disk (``$FEDLT_CACHE_DIR`` or ``~/.cache/fedlt``, sub-folder ``sse_c``; atomic writes,
an unreadable file counts as a miss). The layer's bias is PyTorch's default ``nn.Linear``
initialisation drawn from the seed (uniform ±1/√d) and frozen, as in the official code, or
absent (``bias: none``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fedlt.errors import ConfigError
from fedlt.seeding import copy_legacy, legacy_digest, torch_generator

CACHE_VERSION = 2  # 2: seeds from fedlt.seeding; official-stream matrices
COSINE_CLAMP = 0.99999
FEDLT_STREAM = "fedlt"
OFFICIAL_PREFIX = "fedloge-official-"
MEMORY_CACHE_SIZE = 16


@dataclass(frozen=True)
class SSECSpec:
    """Everything the SSE-C matrix depends on (the cache key)."""

    feature_dim: int
    num_classes: int
    sparsity: float = 0.6
    target_norm: float = 0.1
    steps: int = 10_000
    lr: float = 1e-4
    seed: int = 0
    stream: str = FEDLT_STREAM
    """``fedlt``, or ``fedloge-official-<digest>`` naming the state of the official numpy
    stream the matrix is drawn from (:func:`official_spec`)."""

    def cache_name(self) -> str:
        drawn = "" if self.stream == FEDLT_STREAM else f"_{self.stream}"
        return (
            f"v{CACHE_VERSION}_d{self.feature_dim}_c{self.num_classes}_b{self.sparsity!r}"
            f"_t{self.target_norm!r}_s{self.steps}_lr{self.lr!r}_seed{self.seed}{drawn}.pt"
        )

    def num_zeros(self) -> int:
        """``int(β·d·C)``: the number of entries forced to zero."""
        return int(self.sparsity * self.feature_dim * self.num_classes)


def check_dimensions(feature_dim: int, num_classes: int) -> None:
    """An ETF of C columns needs C orthonormal columns in R^d, hence d ≥ C ≥ 2."""
    if num_classes < 2:
        raise ConfigError("data", f"an ETF classifier needs at least 2 classes, got {num_classes}")
    if feature_dim < num_classes:
        raise ConfigError(
            "model.name",
            f"an ETF classifier needs feature_dim >= num_classes, got feature_dim={feature_dim} "
            f"< {num_classes} classes; use a wider backbone (e.g. resnet18, 512-d)",
        )


def simplex_etf(feature_dim: int, num_classes: int, generator: torch.Generator) -> Tensor:
    """``M = sqrt(C/(C-1))·P·(I − 11ᵀ/C)`` with P from the QR of a uniform d×C matrix (float64)."""
    check_dimensions(feature_dim, num_classes)
    uniform = torch.rand(feature_dim, num_classes, generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(uniform, mode="reduced")
    c = num_classes
    centring = torch.eye(c, dtype=torch.float64) - torch.full((c, c), 1.0 / c, dtype=torch.float64)
    return math.sqrt(c / (c - 1)) * basis @ centring


def sse_c_loss(weight: Tensor, target_norm: float) -> Tensor:
    """``Σ_c (‖w_c‖ − τ)² − (1/C)·Σ_c arccos(clamp(max_{j≠c} cos(w_c, w_j)))`` for W (d×C)."""
    norms = weight.norm(dim=0)
    norm_term = (norms - target_norm).pow(2).sum()
    unit = weight / norms.clamp_min(1e-12)
    cosine = unit.T @ unit
    eye = torch.eye(cosine.shape[0], dtype=torch.bool, device=cosine.device)
    nearest = cosine.masked_fill(eye, -2.0).max(dim=1).values
    angles = torch.arccos(nearest.clamp(-COSINE_CLAMP, COSINE_CLAMP))
    return norm_term - angles.mean()


def _single_thread():
    """Context manager: run torch ops on one intra-op thread (bit-reproducible), then restore."""

    class _Guard:
        def __enter__(self) -> None:
            self.previous = torch.get_num_threads()
            torch.set_num_threads(1)

        def __exit__(self, *exc: object) -> None:
            torch.set_num_threads(self.previous)

    return _Guard()


def _reoptimise(etf: Tensor, mask: Tensor, spec: SSECSpec) -> Tensor:
    """Step 4 in the dtype of ``etf``: Adam on ``sse_c_loss`` from ``etf·mask``, the gradient
    multiplied by ``mask`` before every step, so the masked entries stay exactly 0."""
    weight = (etf * mask).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weight], lr=spec.lr)
    for _ in range(spec.steps):
        optimizer.zero_grad(set_to_none=False)
        sse_c_loss(weight, spec.target_norm).backward()
        weight.grad.mul_(mask)
        optimizer.step()
    with torch.no_grad():
        weight.mul_(mask)  # Adam leaves masked entries at exactly 0; this makes it explicit
    return weight.detach()


def optimise_sse_c(spec: SSECSpec) -> tuple[Tensor, Tensor]:
    """Steps 1-4 in float64: (W d×C, mask d×C with 0 at the ``int(β·d·C)`` pruned entries)."""
    generator = torch_generator(spec.seed, "sse_c")
    with _single_thread():
        etf = simplex_etf(spec.feature_dim, spec.num_classes, generator)
        total = spec.feature_dim * spec.num_classes
        zero_positions = torch.randperm(total, generator=generator)[: spec.num_zeros()]
        mask = torch.ones(total, dtype=torch.float64)
        mask[zero_positions] = 0.0
        mask = mask.view_as(etf)
        weight = _reoptimise(etf, mask, spec)
    return weight, mask


def compute_sse_c(spec: SSECSpec) -> Tensor:
    """Build the SSE-C weight matrix W (d×C, float32) from scratch (no cache).

    A few surviving entries decay towards 0 during the re-optimisation (Adam's normalised
    step shrinks them geometrically); those below float32's range become exact zeros in the
    cast, so the float32 matrix can hold slightly more than ``int(β·d·C)`` zeros.
    """
    weight, _ = optimise_sse_c(spec)
    return weight.to(torch.float32)


# ------------------------------------------------------------------ data.rng: official
def official_spec(spec: SSECSpec, stream: np.random.RandomState) -> SSECSpec:
    """``spec`` drawn from the official numpy ``stream`` (its state names the cache file)."""
    return dataclasses.replace(spec, stream=OFFICIAL_PREFIX + legacy_digest(stream))


def official_etf(feature_dim: int, num_classes: int, stream: np.random.RandomState) -> Tensor:
    """Steps 1-2 as the official code computes them (float32; ``stream`` advances):
    ``P = float32(QR(random((d, C))))``, ``M = sqrt(C/(C-1)) · P (I − (1/C)·11ᵀ)``."""
    check_dimensions(feature_dim, num_classes)
    basis, _ = np.linalg.qr(stream.random_sample((feature_dim, num_classes)))
    p = torch.from_numpy(basis).float()
    c = num_classes
    centring = torch.eye(c) - (1 / c) * torch.ones(c, c)
    return math.sqrt(c / (c - 1)) * torch.matmul(p, centring)


def official_zero_positions(spec: SSECSpec, stream: np.random.RandomState) -> np.ndarray:
    """Step 3's zeros as the official code draws them (``stream`` advances): row-major
    positions ``choice(d·C, int(β·d·C), replace=False)`` in the d×C matrix."""
    total = spec.feature_dim * spec.num_classes
    return stream.choice(total, spec.num_zeros(), replace=False)


def _flushes_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (``torch.set_flush_denormal``)."""
    return float(torch.tensor([1e-40], dtype=torch.float32).mul(1.0)) == 0.0


@contextmanager
def _denormals_kept() -> Iterator[None]:
    """Keep denormal floats in the block (the official float32 re-optimisation does), then
    restore this thread's flush-to-zero setting."""
    flushing = _flushes_denormals()
    if flushing:
        torch.set_flush_denormal(False)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(True)


def compute_official_sse_c(spec: SSECSpec, stream: np.random.RandomState) -> Tensor:
    """Steps 1-4 as the official code computes them, from a copy of ``stream`` (float32,
    denormals kept; one CPU thread): W d×C with exactly the ``int(β·d·C)`` official zeros
    (the mask is ``W ≠ 0`` after sparsifying, as in the official code)."""
    draws = copy_legacy(stream)
    with _single_thread(), _denormals_kept():
        etf = official_etf(spec.feature_dim, spec.num_classes, draws)
        flat = etf.flatten()
        flat[torch.from_numpy(official_zero_positions(spec, draws))] = 0.0
        sparse = flat.view_as(etf)
        return _reoptimise(sparse, (sparse != 0).float(), spec)


def cache_dir(override: str | None = None) -> Path:
    """Folder of cached SSE-C matrices: ``override``, ``$FEDLT_CACHE_DIR`` or ``~/.cache/fedlt``,
    then ``sse_c``."""
    base = override or os.environ.get("FEDLT_CACHE_DIR") or "~/.cache/fedlt"
    return Path(base).expanduser() / "sse_c"


def _read_cached(path: Path, spec: SSECSpec) -> Tensor | None:
    try:
        weight = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # any unreadable file (truncated, foreign, wrong pickle) is a miss
        return None
    expected = (spec.feature_dim, spec.num_classes)
    if not isinstance(weight, Tensor) or tuple(weight.shape) != expected:
        return None
    return weight


def _write_atomic(path: Path, weight: Tensor) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(weight, tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError:
        pass  # a read-only cache only costs recomputation


def _load_or_compute(spec: SSECSpec, folder: str | None, compute: Callable[[], Tensor]) -> Tensor:
    if folder is None:
        return compute()
    path = Path(folder) / spec.cache_name()
    weight = _read_cached(path, spec)
    if weight is None:
        weight = compute()
        _write_atomic(path, weight)
    return weight


@functools.lru_cache(maxsize=MEMORY_CACHE_SIZE)
def _cached_sse_c(spec: SSECSpec, folder: str | None) -> Tensor:
    return _load_or_compute(spec, folder, lambda: compute_sse_c(spec))


_official_memory: dict[tuple[SSECSpec, str | None], Tensor] = {}


def _cached_official(spec: SSECSpec, folder: str | None, stream: np.random.RandomState) -> Tensor:
    """Memory (most recent :data:`MEMORY_CACHE_SIZE`) and disk cache of official matrices;
    ``spec.stream`` names the state of ``stream``, so it is the whole key."""
    key = (spec, folder)
    if key not in _official_memory:
        if len(_official_memory) >= MEMORY_CACHE_SIZE:
            _official_memory.pop(next(iter(_official_memory)))
        compute = lambda: compute_official_sse_c(spec, stream)  # noqa: E731
        _official_memory[key] = _load_or_compute(spec, folder, compute)
    return _official_memory[key]


def build_sse_c(
    spec: SSECSpec,
    use_disk_cache: bool = True,
    folder: str | None = None,
    official_stream: np.random.RandomState | None = None,
) -> Tensor:
    """The SSE-C matrix W (d×C, float32), from the memory cache, the disk cache or computed.

    ``official_stream`` (``data.rng: fedloge-official``): draw it as the official code does,
    continuing that legacy numpy stream (which is not advanced here); ``spec.stream`` is
    then set from the stream's state. Returns a fresh copy: callers may not mutate the
    cached tensor.
    """
    check_dimensions(spec.feature_dim, spec.num_classes)
    location = str(cache_dir(folder)) if use_disk_cache else None
    if official_stream is not None:
        spec = official_spec(spec, official_stream)
        return _cached_official(spec, location, official_stream).clone()
    return _cached_sse_c(spec, location).clone()


def sse_c_bias(feature_dim: int, num_classes: int, seed: int) -> Tensor:
    """PyTorch's default ``nn.Linear(d, C)`` bias, U(−1/√d, 1/√d), drawn from the seed."""
    generator = torch_generator(seed, "sse_c_bias")
    bound = 1.0 / math.sqrt(feature_dim)
    return (torch.rand(num_classes, generator=generator) * 2.0 - 1.0) * bound


def sse_c_layer(
    spec: SSECSpec,
    bias: bool = True,
    use_disk_cache: bool = True,
    folder: str | None = None,
    official_stream: np.random.RandomState | None = None,
) -> nn.Linear:
    """Frozen ``nn.Linear(d, C)`` computing ``logits = Wᵀh + b`` (no parameter requires grad);
    W from :func:`build_sse_c` (``official_stream``: the official draws)."""
    weight = build_sse_c(spec, use_disk_cache, folder, official_stream)
    layer = nn.Linear(spec.feature_dim, spec.num_classes, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(weight.T)
        if bias:
            layer.bias.copy_(sse_c_bias(spec.feature_dim, spec.num_classes, spec.seed))
    layer.requires_grad_(False)
    return layer


def column_geometry(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Column norms and the pairwise angles in degrees (upper triangle) of W (d×C)."""
    norms = weight.norm(dim=0)
    unit = weight / norms.clamp_min(1e-12)
    cosine = (unit.T @ unit).clamp(-1.0, 1.0)
    rows, cols = torch.triu_indices(cosine.shape[0], cosine.shape[1], offset=1)
    return norms, torch.rad2deg(torch.arccos(cosine[rows, cols]))
