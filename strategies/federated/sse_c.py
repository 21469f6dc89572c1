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

The matrix is a deterministic function of ``(d, C, β, τ, steps, lr, seed)``; it is computed
in float64 on one CPU thread (so every worker and every machine gets the same bits), then
cast to float32. 10,000 Adam steps take seconds, so results are cached in memory and on
disk (``$FEDLT_CACHE_DIR`` or ``~/.cache/fedlt``, sub-folder ``sse_c``; atomic writes,
an unreadable file counts as a miss). The layer's bias is PyTorch's default ``nn.Linear``
initialisation drawn from the seed (uniform ±1/√d) and frozen, as in the official code, or
absent (``bias: none``).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from fedlt.errors import ConfigError
from strategies.federated._common import derive_seed

CACHE_VERSION = 1
COSINE_CLAMP = 0.99999


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

    def cache_name(self) -> str:
        return (
            f"v{CACHE_VERSION}_d{self.feature_dim}_c{self.num_classes}_b{self.sparsity!r}"
            f"_t{self.target_norm!r}_s{self.steps}_lr{self.lr!r}_seed{self.seed}.pt"
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


def optimise_sse_c(spec: SSECSpec) -> tuple[Tensor, Tensor]:
    """Steps 1-4 in float64: (W d×C, mask d×C with 0 at the ``int(β·d·C)`` pruned entries)."""
    generator = torch.Generator().manual_seed(derive_seed(spec.seed, "sse_c"))
    with _single_thread():
        etf = simplex_etf(spec.feature_dim, spec.num_classes, generator)
        total = spec.feature_dim * spec.num_classes
        zero_positions = torch.randperm(total, generator=generator)[: spec.num_zeros()]
        mask = torch.ones(total, dtype=torch.float64)
        mask[zero_positions] = 0.0
        mask = mask.view_as(etf)
        weight = (etf * mask).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([weight], lr=spec.lr)
        for _ in range(spec.steps):
            optimizer.zero_grad(set_to_none=False)
            sse_c_loss(weight, spec.target_norm).backward()
            weight.grad.mul_(mask)
            optimizer.step()
        with torch.no_grad():
            weight.mul_(mask)  # Adam leaves masked entries at exactly 0; this makes it explicit
    return weight.detach(), mask


def compute_sse_c(spec: SSECSpec) -> Tensor:
    """Build the SSE-C weight matrix W (d×C, float32) from scratch (no cache).

    A few surviving entries decay towards 0 during the re-optimisation (Adam's normalised
    step shrinks them geometrically); those below float32's range become exact zeros in the
    cast, so the float32 matrix can hold slightly more than ``int(β·d·C)`` zeros.
    """
    weight, _ = optimise_sse_c(spec)
    return weight.to(torch.float32)


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


@functools.lru_cache(maxsize=16)
def _cached_sse_c(spec: SSECSpec, folder: str | None) -> Tensor:
    if folder is None:
        return compute_sse_c(spec)
    path = Path(folder) / spec.cache_name()
    weight = _read_cached(path, spec)
    if weight is None:
        weight = compute_sse_c(spec)
        _write_atomic(path, weight)
    return weight


def build_sse_c(spec: SSECSpec, use_disk_cache: bool = True, folder: str | None = None) -> Tensor:
    """The SSE-C matrix W (d×C, float32), from the memory cache, the disk cache or computed.

    Returns a fresh copy: callers may not mutate the cached tensor.
    """
    check_dimensions(spec.feature_dim, spec.num_classes)
    location = str(cache_dir(folder)) if use_disk_cache else None
    return _cached_sse_c(spec, location).clone()


def sse_c_bias(feature_dim: int, num_classes: int, seed: int) -> Tensor:
    """PyTorch's default ``nn.Linear(d, C)`` bias, U(−1/√d, 1/√d), drawn from the seed."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "sse_c_bias"))
    bound = 1.0 / math.sqrt(feature_dim)
    return (torch.rand(num_classes, generator=generator) * 2.0 - 1.0) * bound


def sse_c_layer(
    spec: SSECSpec, bias: bool = True, use_disk_cache: bool = True, folder: str | None = None
) -> nn.Linear:
    """Frozen ``nn.Linear(d, C)`` computing ``logits = Wᵀh + b`` (no parameter requires grad)."""
    weight = build_sse_c(spec, use_disk_cache, folder)
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
