"""Federated continual learning: every client replays its own Si-Blurry stream
(``engine: federated_continual``, docs/federated_continual.md).

- :mod:`.streams`: each client's stream, drawn from the run seed, and the round schedule;
- :mod:`.online`: one round of a client's online steps (exposure, replay memory);
- :mod:`.runtime`: the per-process runtime (the federated one, with streams);
- :mod:`.engine`: the round loop's evaluation, metrics and figures.
"""
