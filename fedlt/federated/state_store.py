"""Server-side, disk-backed store of per-client persistent state.

Per-client state (FedLoGe's personal head φ_k, Ditto's personal model, FedRep's head) must
survive rounds, resume and multi-node clusters. Flower's ``Context.state`` is pickled to the
worker and back on every call, so large state is kept here instead: the server reads client
k's state, sends it with k's training message and stores what comes back.

Files are never overwritten: each ``put`` writes ``<id>/r<round>.pt`` and the in-memory index
maps client id -> round of its latest file. A checkpoint stores the index (a few bytes per
client); restoring it points every client back to the files of that round, which still exist
because :meth:`collect_garbage` only removes files no kept index refers to.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import Tensor

from fedlt.runs import atomic_write_bytes

StateDict = dict[str, Tensor]


class ClientStateStore:
    """Versioned per-client state files under ``root`` (one folder per client)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index: dict[int, int] = {}

    def _file(self, client_id: int, round_: int) -> Path:
        return self.root / str(client_id) / f"r{round_}.pt"

    def __contains__(self, client_id: int) -> bool:
        return client_id in self.index

    def get(self, client_id: int) -> StateDict | None:
        """Latest state of ``client_id``, or None if it never trained."""
        if client_id not in self.index:
            return None
        path = self._file(client_id, self.index[client_id])
        return torch.load(path, map_location="cpu", weights_only=True)

    def put(self, client_id: int, state: StateDict, round_: int) -> None:
        """Store ``state`` as client ``client_id``'s state after round ``round_``."""
        if not state:
            return
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
        atomic_write_bytes(self._file(client_id, round_), buffer.getvalue())
        self.index[client_id] = round_

    def snapshot(self) -> dict[int, int]:
        """The index to save in a checkpoint."""
        return dict(self.index)

    def restore(self, snapshot: dict[int, int]) -> None:
        """Point every client back to its files as of a checkpoint."""
        missing = [c for c, r in snapshot.items() if not self._file(c, r).is_file()]
        if missing:
            raise FileNotFoundError(
                f"client state files missing under {self.root} for clients {missing[:5]}"
            )
        self.index = {int(c): int(r) for c, r in snapshot.items()}

    def collect_garbage(self, keep: list[dict[int, int]]) -> None:
        """Delete state files referenced neither by the live index nor by ``keep``."""
        referenced = {(c, r) for snap in [self.index, *keep] for c, r in snap.items()}
        for folder in self.root.iterdir():
            if not folder.is_dir() or not folder.name.isdigit():
                continue
            client = int(folder.name)
            for f in folder.glob("r*.pt"):
                try:
                    round_ = int(f.stem[1:])
                except ValueError:
                    continue
                if (client, round_) not in referenced:
                    f.unlink(missing_ok=True)
