"""Client sampling: deterministic per (seed, round), never picks clients without data."""

from __future__ import annotations

import numpy as np

from fedlt.seeding import rng


def sample_clients(eligible: list[int], participation: float, seed: int, round_: int) -> list[int]:
    """Pick ``max(1, round(participation · |eligible|))`` clients without replacement.

    The generator is the run seed's ``client_sampling`` stream of that round
    (:func:`fedlt.seeding.rng`), so the choice does not depend on earlier rounds having run
    in this process (exact resume) nor on the number of workers.
    Returned in increasing partition-id order (the aggregation order).
    """
    if not eligible:
        raise ValueError("no client has training data")
    if participation >= 1.0:
        return sorted(eligible)
    count = max(1, round(participation * len(eligible)))
    chosen = rng(seed, "client_sampling", round_).choice(
        np.asarray(sorted(eligible)), size=count, replace=False
    )
    return sorted(int(c) for c in chosen)
