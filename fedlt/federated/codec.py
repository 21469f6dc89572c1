"""Many state dicts in one byte buffer: how a cohort's tensors travel in one Flower Array.

A cohort of 500 clients with a 14-tensor model would otherwise be 7,000 arrays, each with
its own header to write and parse and its own node in Flower's message tree. :func:`pack`
lays every tensor of every state end to end in one ``uint8`` buffer (each entry aligned to
8 bytes, any dtype, bfloat16 included) and describes it with a small JSON layout (states
with the same keys, dtypes and shapes share one layout entry). :func:`unpack` returns
zero-copy views into that buffer, bit-identical to the tensors packed. No Flower import.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

StateDict = dict[str, Tensor]
ALIGN = 8

_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}


def _padded(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def pack(states: Sequence[StateDict]) -> tuple[np.ndarray, str]:
    """One ``uint8`` buffer holding every tensor of ``states`` and its JSON layout."""
    layouts: list[list[tuple[str, str, list[int]]]] = []
    layout_ids: dict[tuple, int] = {}
    which: list[int] = []
    entries: list[Tensor] = []
    total = 0
    for state in states:
        layout = []
        for key, value in state.items():
            name = str(value.dtype).removeprefix("torch.")
            if name not in _DTYPES:
                raise TypeError(f"cannot pack tensor {key!r} of dtype {value.dtype}")
            layout.append((key, name, list(value.shape)))
            flat = value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            entries.append(flat)
            total += _padded(flat.numel())
        signature = tuple((k, d, tuple(s)) for k, d, s in layout)
        if signature not in layout_ids:
            layout_ids[signature] = len(layouts)
            layouts.append(layout)
        which.append(layout_ids[signature])
    buffer = torch.zeros(total, dtype=torch.uint8)
    offset = 0
    for flat in entries:
        buffer[offset : offset + flat.numel()] = flat
        offset += _padded(flat.numel())
    return buffer.numpy(), json.dumps({"layouts": layouts, "states": which})


def unpack(buffer: np.ndarray, layout_json: str) -> list[StateDict]:
    """The state dicts :func:`pack` packed, as views into ``buffer`` (clone what you keep)."""
    meta = json.loads(layout_json)
    data = torch.from_numpy(np.ascontiguousarray(buffer, dtype=np.uint8))
    layouts = [
        [(key, _DTYPES[name], shape, _nbytes(_DTYPES[name], shape)) for key, name, shape in lay]
        for lay in meta["layouts"]
    ]
    expected = sum(_padded(n) for i in meta["states"] for *_, n in layouts[i])
    if expected != data.numel():
        raise ValueError(f"packed buffer has {data.numel()} bytes, its layout describes {expected}")
    states: list[StateDict] = []
    offset = 0
    for layout_id in meta["states"]:
        state: StateDict = {}
        for key, dtype, shape, nbytes in layouts[layout_id]:
            state[key] = data[offset : offset + nbytes].view(dtype).reshape(shape)
            offset += _padded(nbytes)
        states.append(state)
    return states


def _nbytes(dtype: torch.dtype, shape: list[int]) -> int:
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return count * torch.empty((), dtype=dtype).element_size()
