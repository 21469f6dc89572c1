"""Seconds per federated round: FedLoGe vs FedAvg, same data, same model, one process.

Calls the strategies directly (no Flower, no Ray): for each round, every client's
``local_update`` in partition-id order, then ``aggregate``. The SSE-C matrix is built (or
read from the cache) before timing starts and its cost is printed separately.

    python scripts/bench_fedloge_round.py                     # resnet8, 10 clients x 200
    python scripts/bench_fedloge_round.py --threads 2 --rounds 3 --batch-size 8
    python scripts/bench_fedloge_round.py --seed 1 --flush-denormal off   # the engine's default is on

``--flush-denormal`` mirrors ``resources.flush_denormal``: seed 1's SSE-C holds denormal
entries, and without flushing them the CPU's slow path makes FedLoGe's rounds much slower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fedlt.devices import configure_torch
from fedlt.models import build_model
from strategies.federated import FEDERATED_STRATEGIES, parse_options
from strategies.federated.base import ClientData, FederatedStrategy, TrainConfig


def synthetic_clients(
    num_clients: int, samples: int, num_classes: int, size: int, seed: int
) -> list[ClientData]:
    """Class-dependent mean images plus noise (normalised scale), one tensor per client."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, 3, size, size, generator=g)
    clients = []
    for _ in range(num_clients):
        y = torch.randint(0, num_classes, (samples,), generator=g)
        x = means[y] + torch.randn(samples, 3, size, size, generator=g)
        clients.append(ClientData(x, y, num_classes))
    return clients


class RoundRunner:
    """Holds one strategy's global and client states so rounds can be interleaved."""

    def __init__(self, strategy: FederatedStrategy, clients: list[ClientData]) -> None:
        self.strategy, self.clients = strategy, clients
        self.global_state = strategy.init_global_state()
        self.states: dict[int, dict] = {}
        self.round = 0

    def run_round(self, train: TrainConfig) -> float:
        start = time.perf_counter()
        results = []
        for k, data in enumerate(self.clients):
            gen = torch.Generator().manual_seed(1_000 * self.round + k)
            state = self.states.get(k) or self.strategy.init_client_state(k)
            result = self.strategy.local_update(self.global_state, state, data, train, gen)
            self.states[k] = result.client_state
            results.append(result)
        self.global_state = self.strategy.aggregate(self.global_state, results)
        self.round += 1
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flush-denormal", choices=["on", "off"], default="on")
    args = parser.parse_args()

    configure_torch(args.threads, args.flush_denormal == "on")
    clients = synthetic_clients(
        args.clients, args.samples, args.classes, args.image_size, args.seed
    )
    train = TrainConfig(local_epochs=args.local_epochs, batch_size=args.batch_size, lr=0.03)
    image_shape = (3, args.image_size, args.image_size)

    def factory() -> torch.nn.Module:
        return build_model(args.model, args.classes, image_shape)

    runners: dict[str, RoundRunner] = {}
    for name in ("fedavg", "fedloge"):
        cls = FEDERATED_STRATEGIES.get(name)
        start = time.perf_counter()
        strategy = cls(parse_options(cls, {}), factory, args.classes, "cpu", args.seed)
        print(f"{name:8s} construction {time.perf_counter() - start:6.2f} s (FedLoGe: SSE-C incl.)")
        runners[name] = RoundRunner(strategy, clients)
    # Interleave the two methods round by round (alternating which goes first) so that
    # load from other processes hits both alike.
    results: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        order = ["fedavg", "fedloge"] if r % 2 == 0 else ["fedloge", "fedavg"]
        for name in order:
            results[name].append(runners[name].run_round(train))
    for name, seconds in results.items():
        print(f"{name:8s} rounds [{', '.join(f'{s:.2f}' for s in seconds)}] s")

    avg = statistics.median(results["fedavg"])
    loge = statistics.median(results["fedloge"])
    print(
        f"\n{args.model}, {args.clients} clients x {args.samples} samples, "
        f"batch {args.batch_size}, {args.local_epochs} local epoch(s), "
        f"{args.threads} thread(s), CPU, seed {args.seed}, flush denormals {args.flush_denormal}; "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"FedAvg  {avg:.2f} s/round")
    print(f"FedLoGe {loge:.2f} s/round")
    print(f"ratio FedLoGe/FedAvg = {loge / avg:.3f}")


if __name__ == "__main__":
    main()
