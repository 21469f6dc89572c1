"""Experiment configuration: YAML -> typed dataclasses, with overrides.

Overrides are (key path, value) pairs; the command line's ``--set a.b=value`` texts are
parsed into pairs once (:func:`override_pairs`), and the Python API's ``{"a.b": value}``
mappings become pairs without passing through text (docs/api.md).

Every error names the dotted key path and what was expected::

    data.partition.alpha: must be > 0, got 0.0
    data.partiton: unknown key (did you mean 'partition'?); expected one of: source, ...

Engine-specific sections live beside their engine (:mod:`fedlt.federated.config`,
:mod:`fedlt.continual.config`); component options (``strategy.options``,
``model.options``) are checked against the component's own options dataclass when the
config is resolved, so typos fail before any work starts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fedlt.configtools import from_dict, require, require_range, require_seed, to_dict
from fedlt.continual.config import StreamConfig
from fedlt.errors import ConfigError
from fedlt.federated.config import FederatedConfig
from fedlt.resources import simulations_dir
from fedlt.seeding import LEGACY_SEED_LIMIT

SIMULATIONS_DIR = simulations_dir()
DEFAULT_CONFIG = SIMULATIONS_DIR / "default.yaml"


@dataclass
class LongTailConfig:
    """Global long-tail profile applied to the training set (docs/partition.md;
    FedLoGe, Xiao et al., ICLR 2024).

    ``exponential``: class c keeps ``int(n_max * IF^(-c/(C-1)))`` images (Cao et al. 2019).
    ``step``: the first ``(1 - step_minority_fraction)`` of classes keep ``n_max``, the rest
    ``int(n_max / IF)``. ``none``: keep everything.
    """

    profile: Literal["none", "exponential", "step"] = "none"
    imbalance_factor: float = 1.0
    step_minority_fraction: float = 0.5

    def validate(self, prefix: str) -> None:
        require(
            self.imbalance_factor >= 1.0,
            f"{prefix}.imbalance_factor",
            f"must be >= 1 (n_max / n_min), got {self.imbalance_factor}",
        )
        require(
            0.0 < self.step_minority_fraction < 1.0,
            f"{prefix}.step_minority_fraction",
            f"must lie in (0, 1), got {self.step_minority_fraction}",
        )


@dataclass
class PartitionConfig:
    """How training samples are split over clients.

    ``name``: a registered partitioner (iid, dirichlet, shard, file),
    ``package.module:callable`` or ``flwr_datasets:<Partitioner>`` (docs/partition.md).
    ``alpha`` is the Dirichlet concentration, ``min_size`` (>0) switches on the
    minimum-client-size Dirichlet variant, ``classes_per_client`` is for ``shard``,
    ``path`` for ``file``; ``options`` are passed to custom and Flower Datasets
    partitioners.
    """

    name: str = "dirichlet"
    num_clients: int = 10
    alpha: float = 0.5
    min_size: int = 0
    classes_per_client: int = 2
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        require_range(self.num_clients, f"{prefix}.num_clients", 1)
        require_range(self.alpha, f"{prefix}.alpha", 0, low_open=True)
        require_range(self.min_size, f"{prefix}.min_size", 0)
        require_range(self.classes_per_client, f"{prefix}.classes_per_client", 1)


@dataclass
class DataConfig:
    """Dataset source, global long tail and client partition.

    ``source``: digits (scikit-learn's bundled set, the offline default), synthetic,
    cifar10, cifar100, imagefolder, ``torchvision:<Name>``, ``hf:<path>`` or
    ``package.module:callable`` (docs/partition.md). ``root``: where the files are.
    ``options``: source-specific (e.g. synthetic's ``num_classes``, ``image_size``).
    ``cache_dir``: decoded-image cache (default ``~/.cache/fedlt``). ``download``: fetch
    cifar / torchvision datasets when missing and online (never for ``hf:``).
    ``rng``: whose random draws build the data (docs/partition.md, "Random streams"):
    ``fedlt`` (one named stream of the run seed per step) or ``fedloge-official`` (the
    official FedLoGe code's draws, draw for draw: long tail after ``np.random.seed(0)``,
    Dirichlet partition and local test sets from the run seed's legacy numpy stream, which
    FedLoGe's SSE-C continues; needs ``partition.name: dirichlet``, ``min_size: 0`` and a
    seed below 2**32).
    ``normalization``: the per-channel mean/std inputs are normalised with
    (docs/partition.md, "Normalisation"): ``data`` (the source's own training-split
    statistics) or ``imagenet`` (ImageNet's mean (0.485, 0.456, 0.406) and std (0.229,
    0.224, 0.225), as the official FedLoGe code uses; 3-channel images only).
    """

    source: str = "digits"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None
    download: bool = False
    rng: Literal["fedlt", "fedloge-official"] = "fedlt"
    normalization: Literal["data", "imagenet"] = "data"
    longtail: LongTailConfig = field(default_factory=LongTailConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)

    def check_official(self, engine: str, seed: int, prefix: str = "data") -> None:
        """``rng: fedloge-official`` draws what the official code draws, which exists only
        for its per-sample Dirichlet partition and for 32-bit seeds (``np.random.seed``)."""
        if self.rng != "fedloge-official":
            return
        require(
            seed < LEGACY_SEED_LIMIT,
            "seed",
            f"{prefix}.rng: fedloge-official seeds numpy's legacy generator, which takes "
            f"seeds below 2**32; got {seed}",
        )
        if engine == "continual":
            return
        require(
            self.partition.name == "dirichlet" and self.partition.min_size == 0,
            f"{prefix}.partition.name",
            f"{prefix}.rng: fedloge-official draws the official per-sample Dirichlet partition; "
            f"it needs name: dirichlet and min_size: 0, got name: {self.partition.name}, "
            f"min_size: {self.partition.min_size}",
        )


@dataclass
class ModelConfig:
    """Network: a registered model name (``cnn_small``, ``resnet8``, ``resnet18``, ``vit_tiny``,
    ...) and its options."""

    name: str = "cnn_small"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StrategyConfig:
    """Learning method (federated or continual, by engine) and its hyperparameters.

    ``options`` is the mapping as written; when the config is resolved it is parsed into the
    method's own ``Options`` dataclass once, and :attr:`typed_options` returns that object
    (docs/federated.md, "Adding a strategy").
    """

    name: str = "fedavg"
    options: dict[str, Any] = field(default_factory=dict)
    _typed: tuple[dict[str, Any], Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def keep_typed(self, typed: Any) -> None:
        """Remember ``typed``, the parse of the current ``options``."""
        self._typed = (copy.deepcopy(self.options), typed)

    @property
    def typed_options(self) -> Any | None:
        """The ``Options`` object parsed when the config was resolved; None when there is
        none, or when ``options`` was changed since (then parse it again)."""
        if self._typed is None or self._typed[0] != self.options:
            return None
        return self._typed[1]


@dataclass
class ResourcesConfig:
    """Where and how work runs.

    ``device``: auto (cuda when present), cpu or cuda. ``num_cpus`` / ``num_gpus``: Ray
    resources per simulated client (or per sweep task); ``num_gpus`` may be fractional.
    ``ray_address``: join an existing Ray cluster (``auto`` or ``host:port``); ``None``
    starts a local one (``RAY_ADDRESS`` in the environment also works).
    ``ray_num_cpus``: CPUs a local Ray may use (None: all); with ``num_cpus: 1`` per client
    this is the number of parallel client workers. ``num_threads``: torch intra-op threads
    per worker (0 keeps torch's default). ``flush_denormal``: treat denormal floats as zero
    on the CPU (``torch.set_flush_denormal``); arithmetic on denormals is one to two orders
    of magnitude slower, and FedLoGe's SSE-C can hold a few such entries (seed 1: a FedLoGe
    round took 1.7× longer without it, docs/fedloge.md). Only values below 1.2e-38 change.
    ``pool_size``: simulated SuperNodes (workers) the Flower backend spreads the sampled
    clients over, one cohort per node and round (None: as many as Ray can place with
    ``num_cpus`` / ``num_gpus`` each). Results do not depend on it.
    ``channels_last``: convolutional models train and evaluate in NHWC memory format.
    """

    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    num_threads: int = 1
    flush_denormal: bool = True
    pool_size: int | None = None
    channels_last: bool = True

    def validate(self, prefix: str) -> None:
        require_range(self.num_cpus, f"{prefix}.num_cpus", 0, low_open=True)
        require_range(self.num_gpus, f"{prefix}.num_gpus", 0)
        if self.ray_num_cpus is not None:
            require_range(self.ray_num_cpus, f"{prefix}.ray_num_cpus", 1)
        require_range(self.num_threads, f"{prefix}.num_threads", 0)
        require(
            self.pool_size is None or self.pool_size >= 1,
            f"{prefix}.pool_size",
            f"must be >= 1 (or null for one per Ray worker), got {self.pool_size}",
        )


SinkName = Literal["tensorboard", "mlflow", "wandb"]


@dataclass
class LoggingConfig:
    """Progress display and metric sinks (docs/tracking.md).

    ``sinks``: where every metrics record is mirrored besides ``metrics.jsonl``:
    ``tensorboard`` (event files in ``<run>/tensorboard``), ``mlflow`` (tracking store
    ``mlflow_uri``, default ``sqlite:///<output_dir>/mlflow.db``; experiment
    ``mlflow_experiment``), ``wandb`` (project ``wandb_project``, ``wandb_mode`` offline by
    default). ``tensorboard: true`` is shorthand for ``sinks: [tensorboard]``.
    """

    progress: bool = True
    verbose: bool = False
    tensorboard: bool = False
    sinks: list[SinkName] = field(default_factory=list)
    mlflow_uri: str | None = None
    mlflow_experiment: str = "fedlt"
    wandb_project: str = "fedlt"
    wandb_mode: Literal["offline", "online"] = "offline"

    def validate(self, prefix: str) -> None:
        repeated = sorted({s for s in self.sinks if self.sinks.count(s) > 1})
        require(not repeated, f"{prefix}.sinks", f"{repeated} given more than once")
        require(bool(self.mlflow_experiment), f"{prefix}.mlflow_experiment", "must not be empty")
        require(bool(self.wandb_project), f"{prefix}.wandb_project", "must not be empty")

    def sink_names(self) -> list[str]:
        """The sinks to open: ``sinks``, plus ``tensorboard`` when ``tensorboard: true``."""
        names = list(self.sinks)
        if self.tensorboard and "tensorboard" not in names:
            names.insert(0, "tensorboard")
        return names


@dataclass
class ExperimentConfig:
    """A whole experiment: one YAML file in ``simulations/``."""

    name: str = "default"
    seed: int = 0
    engine: Literal["federated", "continual", "federated_continual"] = "federated"
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    federated: FederatedConfig = field(default_factory=FederatedConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self, prefix: str) -> None:
        check_run_name(self.name, _join(prefix, "name"))
        require_seed(self.seed, _join(prefix, "seed"))
        require(bool(self.output_dir), _join(prefix, "output_dir"), "must not be empty")
        self.data.check_official(self.engine, self.seed, _join(prefix, "data"))
        if self.engine == "federated_continual":
            require(
                self.federated.local_epochs == 1,
                _join(prefix, "federated.local_epochs"),
                "engine federated_continual reads each client's stream once (online); "
                f"got {self.federated.local_epochs}: use stream.online_iter for more steps "
                "per batch",
            )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


RUN_NAME_MAX_BYTES = 200
"""Room for the ``-YYYYmmdd-HHMMSS-N`` suffix within the usual 255-byte file-name limit."""


def check_run_name(name: str, key: str = "name") -> None:
    """A run name becomes one folder name: refuse ``/``, ``\\``, ``.``, ``..``, control
    characters and names too long for a file system."""
    expected = "expected a single folder name (no '/', '\\', '..' or control characters)"
    if not name or name.strip() != name:
        raise ConfigError(key, f"{expected}; got {name!r} (empty or padded with spaces)")
    if name in (".", ".."):
        raise ConfigError(key, f"{expected}; got {name!r}")
    bad = next((c for c in name if c in "/\\" or ord(c) < 32 or 127 <= ord(c) < 160), None)
    if bad is not None:
        raise ConfigError(key, f"{expected}; {name!r} contains {bad!r}")
    if len(name.encode()) > RUN_NAME_MAX_BYTES:
        size = len(name.encode())
        raise ConfigError(key, f"{expected}; at most {RUN_NAME_MAX_BYTES} bytes, got {size}")


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping gives the same key twice (PyYAML would silently keep the last)."""

    def __init__(self, key: str, line: int, first_line: int) -> None:
        self.key = key
        self.line = line
        self.first_line = first_line
        super().__init__(
            f"line {line}: duplicate key {key!r} (first given on line {first_line}); "
            "give each key once"
        )


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (see :func:`load_yaml_text`)."""


def _check_unique_keys(node: yaml.Node, path: str, seen: set[int]) -> None:
    """Raise DuplicateKeyError for the first mapping (depth first) that repeats a key."""
    if id(node) in seen:  # an alias: already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, f"{path}[{i}]", seen)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[tuple[str, str], int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        dotted = _join(path, str(key_node.value))
        identity = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if identity in first:
            raise DuplicateKeyError(dotted, line, first[identity])
        first[identity] = line
        _check_unique_keys(value_node, dotted, seen)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document safely, refusing duplicate keys (named by dotted path)."""
    loader = UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_unique_keys(node, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


OverridePair = tuple[Sequence[str], Any]
"""One override: the key path (``["data", "partition", "alpha"]``) and the value to set."""
Override = str | OverridePair
"""An override as a (path, value) pair, or the command line's ``"a.b=value"`` text."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value read as YAML: ``3``, ``0.5``, ``true``, ``[1, 2]``)."""
    if "=" not in text:
        raise ConfigError(
            "--set", f"expected KEY=VALUE (e.g. data.partition.alpha=0.1), got {text!r}"
        )
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", f"bad key in {text!r}")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"cannot parse value {raw!r} ({exc})") from exc
    return key.split("."), value


def override_pairs(overrides: Iterable[Override]) -> list[OverridePair]:
    """(path, value) pairs; ``"a.b=value"`` texts are parsed here, once, at the edge."""
    return [parse_override(o) if isinstance(o, str) else (list(o[0]), o[1]) for o in overrides]


def set_dotted(raw: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``raw[path[0]][path[1]]... = value``, creating missing mappings; a ConfigError
    names the key when a step on the way holds something other than a mapping."""
    node = raw
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(".".join(path[: i + 1]), f"is {child!r}, not a mapping")
        node = child
    node[path[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[Override]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each override set in order (creating mappings).

    Values of (path, value) pairs are set as given (deep-copied), with no round trip
    through text."""
    out = copy.deepcopy(raw)
    for path, value in override_pairs(overrides):
        set_dotted(out, path, copy.deepcopy(value))
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError("", f"{path}: is a folder; expected an experiment YAML file")
    if not path.is_file():
        raise ConfigError("", f"config file not found: {path}")
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise ConfigError(exc.key, f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path}: not valid YAML ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{path}: cannot read the config file ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            "", f"{path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def resolve(raw: dict[str, Any], overrides: Iterable[Override] | None = None) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a mapping plus overrides.

    Validation includes the options of the chosen strategy and model and the existence of the
    named data source / partitioner, so a typo fails here, before anything runs.
    """
    merged = apply_overrides(raw, overrides or [])
    cfg = from_dict(ExperimentConfig, merged)
    _validate_components(cfg)
    return cfg


def load_config(
    path: str | Path | None = None, overrides: Iterable[Override] | None = None
) -> ExperimentConfig:
    """Load a YAML experiment file (default: the embedded ``simulations/default.yaml``)."""
    return resolve(read_yaml(path or DEFAULT_CONFIG), overrides)


def _validate_components(cfg: ExperimentConfig) -> None:
    """Check component names and options against their registries (lazy imports); the
    parsed strategy options are kept on the config (:attr:`StrategyConfig.typed_options`)."""
    from fedlt.data.partition import check_partitioner
    from fedlt.data.sources import check_source

    check_source(cfg.data.source, "data.source")
    check_partitioner(cfg.data.partition)
    from fedlt.models import MODELS

    MODELS.get(cfg.model.name, "model.name")
    if cfg.engine == "federated":
        from strategies.federated import FEDERATED_STRATEGIES, parse_options

        strategy_cls = FEDERATED_STRATEGIES.get(cfg.strategy.name, "strategy.name")
        typed = parse_options(strategy_cls, cfg.strategy.options, "strategy.options")
    elif cfg.engine == "federated_continual":
        from strategies.federated import parse_options
        from strategies.federated_continual import stream_strategy

        typed = parse_options(stream_strategy(cfg.strategy.name), cfg.strategy.options)
    else:
        from strategies.continual import CONTINUAL_LEARNERS, parse_options

        learner_cls = CONTINUAL_LEARNERS.get(cfg.strategy.name, "strategy.name")
        typed = parse_options(learner_cls, cfg.strategy.options, "strategy.options")
    cfg.strategy.keep_typed(typed)
