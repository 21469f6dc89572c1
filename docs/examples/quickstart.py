"""fedlt from Python, cell by cell (docs/api.md): two federated methods, their metrics, a
run read back from its folder, a comparison report, and an online continual stream.

Run it as a script (``python docs/examples/quickstart.py``) or cell by cell (``# %%``) in an
editor that understands notebook cells. Everything is written under ``$FEDLT_EXAMPLE_OUT``,
or a fresh temporary folder. About ten seconds on two CPU cores (in-process backend,
scikit-learn's bundled digits: nothing to download).
"""

# %% Setup: where the runs go, and a tiny version of the embedded default experiment
import os
import tempfile
from pathlib import Path

import fedlt

out = Path(os.environ.get("FEDLT_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="fedlt-quickstart-"))
tiny = {
    "output_dir": out / "runs",
    "federated.rounds": 3,
    "federated.local_epochs": 1,
    "federated.batch_size": 32,
    "data.partition.num_clients": 4,
    "resources.device": "cpu",
    "logging.progress": False,
}

# %% FedAvg on the long-tailed digits, four clients: the overrides are plain Python values
fedavg = fedlt.run(overrides={**tiny, "strategy.name": "fedavg"}, backend="inprocess")
print(fedavg)
print(f"FedAvg generic top-1: {fedavg.final['generic.global.top1']:.3f}")

# %% Its metrics: one dict per round (a DataFrame with pandas installed)
for record in fedavg.metrics:
    print(record["round"], f"train loss {record['train_loss']:.3f}")
try:
    print(fedavg.to_pandas()[["round", "train_loss", "generic.global.top1"]])
except ImportError as exc:
    print(exc)

# %% FedProx with its own option; a mapping of sections works as well as dotted keys
fedprox = fedlt.run(
    overrides={**tiny, "strategy": {"name": "fedprox", "options": {"mu": 0.01}}},
    backend="inprocess",
)
print(f"FedProx generic top-1: {fedprox.final['generic.global.top1']:.3f}")

# %% Any run folder reads back into the same RunResult (a later session, another machine)
again = fedlt.load_run(fedavg.path)
assert again.summary == fedavg.summary and again.metrics == fedavg.metrics
print(again.config.strategy.name, again.config.federated.rounds, again.status)

# %% Compare the two: the tables of `fedlt report`, as text and files
report = fedlt.report([fedavg.path, fedprox.path], out=out / "report")
print("\n".join(report.markdown.splitlines()[:10]))
print("files:", *(p.name for p in report.files))

# %% The stream engine: experience replay on a Si-Blurry stream, from a shipped config
stream = fedlt.run(
    "simulations/continual/er_digits.yaml",
    overrides={
        "output_dir": out / "runs",
        "stream.num_tasks": 2,
        "stream.online_iter": 1,
        "logging.progress": False,
    },
)
print(stream)
print({key: round(value, 3) for key, value in stream.final.items() if key.startswith("A_")})
