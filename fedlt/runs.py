"""Run directories: resolved config, metrics log, checkpoints, summary, figures.

Layout of ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>[-N]/``::

    config.yaml        the resolved experiment config (what ran)
    status.json        {"status": "running" | "complete" | "failed", "config_sha256", ...}
    lock               {"pid", "host", "since"} of the process writing the run (while it runs)
    metrics.jsonl      one JSON object per round (federated) or per evaluation (stream)
    checkpoints/       step-<k>.pt: everything needed for an exact resume
    client_state/      clients' persistent state (federated; fedlt.federated.state_store)
    timings.json       per-round wall times (federated)
    partition.json     the client partition (federated; :mod:`fedlt.partition_file`)
    summary.json       headline numbers, written last
    figures/           PNG plots
    sinks.json         ids of the MLflow / W&B runs mirroring this run (logging.sinks)
    tensorboard/       event files (logging.sinks: [tensorboard])

:class:`RunDirectory` is the only code that knows these names: everything else (engines,
sweeps, reports, scripts) reads and writes a run's files through it (docs/federated.md,
"Run directory").

A run never reuses a directory. Every file is written atomically (temporary file, fsync,
rename), so a killed run leaves either the old or the new version, never half a file; a
failed write removes its temporary file. A checkpoint records the byte length of
``metrics.jsonl`` at that moment; resuming truncates the log back to it, which is what makes
a resumed ``metrics.jsonl`` byte-identical to an uninterrupted one.

Checkpoints hold plain containers only (dicts, lists, tuples, numbers, strings, bytes,
tensors; numpy arrays are stored as dtype + shape + bytes) and are read with
``torch.load(weights_only=True)``, which refuses any other pickled object: a crafted
checkpoint cannot run code. An unreadable newest checkpoint is set aside
(``step-<k>.pt.unreadable``) and the previous one is used, with a warning on stderr.

One process at a time writes a run: :class:`RunLock` holds an advisory ``flock`` on
``lock`` (released by the kernel when the process dies, so a lock left by a SIGKILLed run
is detected as stale and taken over) and records the owner's pid for the error message.

Metric sinks (``logging.sinks``, docs/tracking.md) mirror every metrics record to
TensorBoard, MLflow or Weights & Biases through the small :class:`MetricSink` protocol. A
sink never makes a run fail: its first error is printed once as a warning and the sink is
switched off for the rest of the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fedlt.config import ExperimentConfig, load_yaml_text, resolve
from fedlt.errors import FedltError, RunError

try:  # POSIX; elsewhere the lock falls back to the recorded pid alone
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

CHECKPOINTS_KEPT = 2
CHECKPOINT_FORMAT = "fedlt-checkpoint/2"
LOCK_NAME = "lock"
BUSY_RETRIES = 5  # a busy lock is asked again this often before a writer is refused
BUSY_RETRY_S = 0.02
STATUS_NAME = "status.json"
CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
TIMINGS_NAME = "timings.json"
PARTITION_NAME = "partition.json"
CHECKPOINT_DIR = "checkpoints"
CLIENT_STATE_DIR = "client_state"
FIGURE_DIR = "figures"
# status keys that survive every status update (running -> failed -> running -> complete)
PERSISTENT_STATUS_KEYS = ("started", "config_sha256", "config_changes")
SINKS_NAME = "sinks.json"


# ----------------------------------------------------------------------------- files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file + fsync + rename.

    On any failure (disk full, read-only folder) the temporary file is removed and a
    :class:`RunError` naming ``path`` is raised; ``path`` keeps its old content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise RunError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _overwrite_in_place(path: Path, data: bytes) -> None:
    """Last resort when an atomic write fails (disk full): rewrite ``path`` in place, which
    reuses its blocks; a failing fsync is ignored (the data reached the page cache)."""
    with open(path, "r+b" if path.is_file() else "wb") as fh:
        fh.write(data)
        fh.truncate()
        fh.flush()
        with contextlib.suppress(OSError):
            os.fsync(fh.fileno())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=_json_default)


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if hasattr(obj, "item") and not hasattr(obj, "__len__"):
        return _finite_or_none(obj.item())
    return obj


def metrics_line(record: dict[str, Any]) -> str:
    """One metrics.jsonl line in strict JSON: NaN and ±inf (an empty class group, a metric
    no client reported) are written as ``null``; :func:`parse_metrics_line` reads them back
    as NaN."""
    return json.dumps(_finite_or_none(record), default=_json_default, allow_nan=False)


def parse_metrics_line(line: str) -> dict[str, Any]:
    """A metrics.jsonl record; top-level ``null`` values (non-finite numbers) become NaN."""
    record = json.loads(line)
    return {k: (math.nan if v is None else v) for k, v in record.items()}


def warn(message: str) -> None:
    """A warning the user must see (stderr, not the log: Flower/Ray may silence logging)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- checkpoints
_TAG = "__fedlt__"


def encode_state(obj: Any, where: str = "state") -> Any:
    """``obj`` with numpy arrays/scalars replaced by plain dicts of dtype, shape and bytes,
    so that ``torch.load(weights_only=True)`` can read it back (see :func:`decode_state`).

    Allowed: None, bool, int, float, str, bytes, tensors, torch dtypes/devices, numpy arrays
    and scalars (not object or structured dtypes), and dicts/lists/tuples of those. Anything
    else raises TypeError naming its place in the state (``state['memory']['rng']``).
    """
    if isinstance(obj, (np.ndarray, np.generic)):  # first: np.float64 is also a float
        return _encode_array(obj, where)
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, bytes):  # as a tensor: pickle protocol 2 stores b"" as a call
        return {_TAG: "bytes", "data": _bytes_tensor(obj)}
    if isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, dict):
        out: dict[Any, Any] = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: key {key!r} is not a str or int")
            out[key] = encode_state(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [encode_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    raise TypeError(
        f"{where}: a {type(obj).__name__} cannot be checkpointed safely (use tensors, numpy "
        "arrays, numbers, strings and dicts/lists/tuples of them)"
    )


def _encode_array(obj: np.ndarray | np.generic, where: str) -> dict[str, Any]:
    array = np.asarray(obj)
    if array.dtype.kind in "OV":
        raise TypeError(f"{where}: numpy dtype {array.dtype} cannot be checkpointed safely")
    return {
        _TAG: "ndarray" if isinstance(obj, np.ndarray) else "npscalar",
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "data": _bytes_tensor(array.tobytes()),
    }


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def decode_state(obj: Any) -> Any:
    """Inverse of :func:`encode_state` (numpy arrays come back with dtype and shape)."""
    if isinstance(obj, dict):
        if obj.get(_TAG) == "bytes":
            return obj["data"].numpy().tobytes()
        if _TAG in obj:
            return _decode_array(obj)
        out: dict[Any, Any] = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            out[key] = decode_state(value)
        return out
    if isinstance(obj, list):
        return [decode_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_state(v) for v in obj)
    return obj


def _decode_array(entry: dict[str, Any]) -> np.ndarray | np.generic:
    dtype = np.dtype(entry["dtype"])
    if dtype.kind in "OV":
        raise ValueError(f"numpy dtype {dtype} is not allowed in a checkpoint")
    data = entry["data"].numpy().tobytes()
    array = np.frombuffer(data, dtype=dtype).reshape(entry["shape"]).copy()
    return array if entry[_TAG] == "ndarray" else array[()]


@dataclass
class Checkpoint:
    """A checkpoint read from disk: the engine's state, its step and the metrics length."""

    step: int
    metrics_bytes: int
    state: dict[str, Any]
    path: Path
    skipped: list[tuple[Path, str]] = field(default_factory=list)


_multiarray = (getattr(np, "_core", None) or np.core).multiarray  # numpy 2 / numpy 1
LEGACY_NUMPY_GLOBALS = (
    _multiarray._reconstruct,
    _multiarray.scalar,
    np.ndarray,
    np.dtype,
    *{type(np.dtype(code)) for code in np.typecodes["All"] if code not in "OV"},
)
"""What format-1 checkpoints (``numpy_rng: np.random.get_state()`` and other numpy arrays
pickled as they are) need besides weights_only's defaults. These rebuild an array or scalar
from a dtype and raw bytes and run no other code; an object array's items still go through
the same restricted unpickler."""


def _load_plain(path: Path) -> Any:
    """``torch.load(weights_only=True)``; for a format-1 file, again with the numpy array
    constructors allowed (nothing else)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "numpy" not in str(exc):
            raise
    allowed = getattr(torch.serialization, "safe_globals", None)
    if allowed is None:  # torch 2.4: no context manager, allow them for the process
        torch.serialization.add_safe_globals(list(LEGACY_NUMPY_GLOBALS))
        return torch.load(path, map_location="cpu", weights_only=True)
    with allowed(list(LEGACY_NUMPY_GLOBALS)):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read one checkpoint file without unpickling arbitrary objects.

    Raises RunError naming ``path`` when the file is truncated, corrupt, not a fedlt
    checkpoint, or holds anything but plain containers (a crafted checkpoint). Checkpoints
    of format 1 (numpy arrays pickled as such) are read with numpy's array constructors
    allowed, as :data:`LEGACY_NUMPY_GLOBALS` says.
    """
    path = Path(path)
    try:
        payload = _load_plain(path)
    except Exception as exc:
        raise RunError(f"cannot read checkpoint {path}: {_load_error(exc)}") from exc
    if not isinstance(payload, dict) or not {"step", "metrics_bytes", "state"} <= set(payload):
        raise RunError(f"{path}: not a fedlt checkpoint (expected step, metrics_bytes, state)")
    try:
        state = decode_state(payload["state"])
        return Checkpoint(int(payload["step"]), int(payload["metrics_bytes"]), state, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path}: malformed fedlt checkpoint ({exc})") from exc


def _load_error(exc: Exception) -> str:
    """One line for a ``torch.load`` failure (its weights-only message is a page long)."""
    text = str(exc)
    if "Weights only load failed" in text or "Unsupported global" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        name = f" ({found.group(1)})" if found else ""
        return (
            f"it holds a pickled Python object{name}, which fedlt refuses to load (a pickle can "
            "run code)"
        )
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


# ----------------------------------------------------------------------------- lock
class RunLock:
    """Exclusive writer lock on a run directory (``<run>/lock``).

    ``acquire`` takes a non-blocking ``flock`` on the lock file and writes the owner record;
    a second writer gets :class:`RunError` naming the owner's pid. The kernel drops the
    ``flock`` when its process dies, so a lock file left by a killed run is stale: the next
    writer takes it over and says so. Where ``flock`` is unavailable the recorded pid alone
    decides (alive on this host: refused).
    """

    def __init__(self, run_path: Path) -> None:
        self.path = Path(run_path) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock; return the stale owner's record when one was taken over."""
        if self._fd is not None:
            return None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RunError(f"cannot create lock {self.path}: {exc.strerror}") from exc
            state = self._try_flock(fd)
            for _ in range(BUSY_RETRIES):  # owner_alive() elsewhere holds it for microseconds
                if state != "busy":
                    break
                time.sleep(BUSY_RETRY_S)
                state = self._try_flock(fd)
            if state == "busy":
                owner = _read_owner(self.path)
                os.close(fd)
                raise RunError(self._busy_message(owner))
            if self._still_linked(fd):
                break
            os.close(fd)  # the previous owner removed it meanwhile: lock the new file
        previous = _read_owner(self.path)
        pid_only = state == "unsupported"
        if pid_only and previous and _pid_alive(previous) and not _is_self(previous):
            os.close(fd)
            raise RunError(self._busy_message(previous))
        self._write_owner(fd)
        self._fd = fd
        if previous and not _is_self(previous):
            return previous
        return None

    def owner_alive(self) -> bool | None:
        """Whether some process holds this lock now, asked without taking it or writing
        anything: ``False`` when no lock file is left or its ``flock`` is free (its writer
        ended or was killed), ``True`` when it is held, ``None`` when this machine cannot
        tell (the owner is recorded on another host, or the file system has no ``flock``
        and the recorded pid is not this host's)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        try:  # held here for microseconds; a writer starting meanwhile asks again (acquire)
            state = self._try_flock(fd)
        finally:
            os.close(fd)  # closing drops a flock taken here
        owner = _read_owner(self.path)
        if owner and owner.get("host") != socket.gethostname():
            return True if state == "busy" else None
        if state == "unsupported":
            return _pid_alive(owner) if owner else None
        return state == "busy"

    def release(self) -> None:
        """Drop the lock and remove the lock file (only if it is still ours)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if self._still_linked(fd):
                self.path.unlink()
        os.close(fd)

    def __getstate__(self) -> dict[str, Any]:
        """A copy (pickled to another process, deep-copied) does not hold the lock: the
        descriptor number means nothing there and must not be closed twice."""
        return {"path": self.path, "_fd": None}

    def __del__(self) -> None:  # an abandoned handle must not keep the run locked
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _try_flock(fd: int) -> str:
        """``locked``, ``busy`` (another open file holds it) or ``unsupported``."""
        if fcntl is None:  # pragma: no cover - not POSIX
            return "unsupported"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "busy"
        except OSError:  # a file system without flock: the pid check decides
            return "unsupported"
        return "locked"

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    @staticmethod
    def _write_owner(fd: int) -> None:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        with contextlib.suppress(OSError):
            os.fsync(fd)

    def _busy_message(self, owner: dict[str, Any] | None) -> str:
        run = self.path.parent
        if not owner:
            who = "another process"
        else:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
            who = f"process {owner.get('pid')} on {owner.get('host')} (since {since})"
        return (
            f"run directory {run} is in use by {who}; two writers would interleave "
            f"metrics.jsonl. Wait for it to finish or stop it, then resume (lock: {self.path})"
        )


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_self(owner: dict[str, Any]) -> bool:
    return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()


def _pid_alive(owner: dict[str, Any]) -> bool:
    """Whether the recorded owner may still run (unknown hosts count as alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


# ----------------------------------------------------------------------------- sinks
@dataclass
class SinkContext:
    """What a sink is opened with: the run folder, its resolved config, and ``state``, a
    JSON-able dict the sink may fill (e.g. its run id) that is kept in ``sinks.json`` and
    handed back when the run is resumed."""

    run_path: Path
    config: ExperimentConfig
    state: dict[str, Any] = field(default_factory=dict)


class MetricSink(Protocol):
    """A place metrics records are mirrored to (docs/tracking.md).

    Built as ``factory(context: SinkContext)``; ``log`` gets every metrics record and its
    step (``round``, or ``samples_seen`` for stream runs), ``close`` the run's final state:
    ``complete``, ``failed`` or ``interrupted``.
    """

    name: str

    def log(self, record: Mapping[str, Any], step: int) -> None: ...

    def close(self, status: str) -> None: ...


def _sink_factories() -> dict[str, Callable[[SinkContext], MetricSink]]:
    from fedlt.tblog import MLflowSink, TensorBoardSink, WandbSink

    return {"tensorboard": TensorBoardSink, "mlflow": MLflowSink, "wandb": WandbSink}


def record_step(record: Mapping[str, Any]) -> int:
    """The step of a metrics record: its ``round`` (federated) or ``samples_seen`` (stream)."""
    return int(record.get("round", record.get("samples_seen", 0)))


class MetricSinks:
    """The sinks of one run (``logging.sinks``), opened on the first record.

    Every call into a sink is guarded: an exception is reported once on stderr and that
    sink is dropped, so a sink can never fail the run.
    """

    def __init__(self, run_path: Path, config: ExperimentConfig) -> None:
        self.run_path = Path(run_path)
        self.config = config
        self.names = config.logging.sink_names()
        self._sinks: dict[str, MetricSink] | None = None
        self.last_step = 0

    @property
    def state_path(self) -> Path:
        return self.run_path / SINKS_NAME

    def _open(self) -> dict[str, MetricSink]:
        if self._sinks is not None:
            return self._sinks
        saved = self._read_state()
        factories = _sink_factories()
        self._sinks = {}
        for name in self.names:
            context = SinkContext(self.run_path, self.config, dict(saved.get(name, {})))
            sink = self._guard(name, factories[name], context)
            if sink is not None:
                self._sinks[name] = sink
                if context.state:
                    saved[name] = context.state
        if saved:
            self._guard("sinks.json", atomic_write_text, self.state_path, dumps(saved))
        return self._sinks

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _guard(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``; on an exception warn (once: the sink is then dropped), return None."""
        try:
            return fn(*args)
        except Exception as exc:
            if self._sinks is not None:
                self._sinks.pop(name, None)
            detail = str(exc).splitlines()[0] if str(exc) else ""
            warn(
                f"metric sink {name!r} failed ({type(exc).__name__}: {detail}); it is switched "
                f"off for the rest of this run ({self.run_path})"
            )
            return None

    def log(self, record: Mapping[str, Any]) -> None:
        """Mirror one metrics record into every open sink."""
        if not self.names:
            return
        step = record_step(record)
        self.last_step = max(self.last_step, step)
        for name, sink in list(self._open().items()):
            self._guard(name, sink.log, record, step)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """The summary's numbers as ``summary.*`` metrics at the last step."""
        if self.names:
            self.log_at({"summary": summary}, self.last_step)

    def log_at(self, record: Mapping[str, Any], step: int) -> None:
        for name, sink in list(self._open().items()):
            self._guard(name, sink.log, record, step)

    def close(self, status: str) -> None:
        """Close every open sink with the run's final state; later records reopen them."""
        sinks, self._sinks = self._sinks, None
        for name, sink in (sinks or {}).items():
            self._guard(name, sink.close, status)


# ----------------------------------------------------------------------------- runs
def _first_missing(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` (or ``path`` itself) that does not exist yet."""
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists() or candidate.is_symlink():
            break
        missing = candidate
    return missing


def _remove_empty_folders(folder: Path, top: Path | None) -> None:
    """Remove ``folder`` and its parents up to ``top`` (inclusive) while they are empty;
    nothing when ``top`` is None (every folder existed before) or not above ``folder``."""
    if top is None or (folder != top and top not in folder.parents):
        return
    for candidate in [folder, *folder.parents]:
        try:
            candidate.rmdir()
        except OSError:
            return
        if candidate == top:
            return


def _make_folder(target: Path, exist_ok: bool) -> None:
    try:
        target.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError as exc:
        if exist_ok:  # it exists but is a file
            raise RunError(f"{target} exists and is not a folder") from exc
        raise RunError(f"run directory {target} already exists; not overwriting it") from exc
    except OSError as exc:
        raise RunError(f"cannot create folder {target}: {exc.strerror or exc}") from exc


class RunDirectory:
    """One experiment's output folder (see the module docstring for the layout).

    ``config`` is the resolved config; when not given (:meth:`at`), it is read from
    ``config.yaml`` the first time it is asked for.
    """

    def __init__(self, path: str | Path, config: ExperimentConfig | None = None) -> None:
        self.path = Path(path)
        self._config = config
        self._sinks: MetricSinks | None = None
        self._lock = RunLock(self.path)
        self._latest: Checkpoint | None = None

    # -- creation -------------------------------------------------------------------
    @classmethod
    def create(
        cls, config: ExperimentConfig, path: str | Path | None = None, *, lock: bool = True
    ) -> RunDirectory:
        """Make a fresh directory (never an existing one), lock it (unless ``lock=False``)
        and write the resolved config. On failure nothing that was created is left."""
        requested = Path(path) if path is not None else Path(config.output_dir)
        created = _first_missing(requested)
        # the folders above the run folder that this call makes (an explicit run folder
        # that appeared meanwhile is someone else's: never removed)
        parents = requested.parent if path is not None else requested
        try:
            target = cls._make_target(config, path)
        except BaseException:
            _remove_empty_folders(parents, created)
            raise
        run = cls(target, config)
        try:
            if lock:
                run.acquire_lock()
            text = config.to_yaml()
            atomic_write_text(run.config_path, text)
            digest = hashlib.sha256(text.encode()).hexdigest()
            run._write_status(
                {"status": "running", "started": time.time(), "config_sha256": digest}
            )
        except BaseException:
            run.release_lock()
            shutil.rmtree(target, ignore_errors=True)
            _remove_empty_folders(target.parent, created)
            raise
        return run

    @staticmethod
    def _make_target(config: ExperimentConfig, path: str | Path | None) -> Path:
        if path is not None:
            target = Path(path)
            _make_folder(target, exist_ok=False)
            return target
        root = Path(config.output_dir)
        _make_folder(root, exist_ok=True)
        base = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        for n in range(1, 10_000):
            target = root / (base if n == 1 else f"{base}-{n}")
            try:
                target.mkdir(exist_ok=False)
                return target
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunError(f"cannot create a run directory in {root}: {exc.strerror}") from exc
        raise RunError(f"cannot find a free run directory name under {root}")  # pragma: no cover

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """An existing run (for resume or report); its config is re-validated."""
        run = cls(path)
        if not run.has_config:
            raise RunError(f"{run.path} is not a fedlt run directory (no {CONFIG_NAME})")
        run._config = resolve(run.read_config_mapping())
        return run

    @classmethod
    def at(cls, path: str | Path) -> RunDirectory:
        """The run folder ``path`` for reading its files, whatever state it is in (it may not
        exist yet); nothing is read or validated until asked for."""
        return cls(path)

    # -- config ---------------------------------------------------------------------
    @property
    def config(self) -> ExperimentConfig:
        """The resolved config (read from ``config.yaml`` on first use when not given)."""
        if self._config is None:
            self._config = resolve(self.read_config_mapping())
        return self._config

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def has_config(self) -> bool:
        return self.config_path.is_file()

    def read_config_mapping(self) -> dict[str, Any]:
        """``config.yaml`` as a plain mapping, as written (not resolved); RunError naming the
        file when it is missing, unreadable or not a mapping."""
        config_file = self.config_path
        if not config_file.is_file():
            raise RunError(f"{self.path} is not a fedlt run directory (no {CONFIG_NAME})")
        try:
            raw = load_yaml_text(config_file.read_text(encoding="utf-8")) or {}
        except FedltError:
            raise
        except Exception as exc:
            raise RunError(f"{config_file}: cannot read the run's config ({exc})") from exc
        if not isinstance(raw, dict):
            raise RunError(f"{config_file}: expected a mapping, got {type(raw).__name__}")
        return raw

    # -- lock -----------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Become the only writer of this run (RunError if another process is)."""
        stale = self._lock.acquire()
        if stale:
            warn(
                f"took over the stale lock of process {stale.get('pid')} on "
                f"{stale.get('host')} (it is no longer running) in {self.path}"
            )

    def release_lock(self) -> None:
        self._lock.release()

    @contextlib.contextmanager
    def supervised(self) -> Iterator[RunDirectory]:
        """Run the block as this run's owner: an exception marks the run failed (unless it
        already says failed or interrupted) and is re-raised; the lock is released at the
        end either way."""
        try:
            yield self
        except BaseException as exc:
            if self.status.get("status") not in ("failed", "interrupted"):
                self.mark_failed(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.release_lock()

    # -- status ---------------------------------------------------------------------
    @property
    def status_path(self) -> Path:
        return self.path / STATUS_NAME

    @property
    def status(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {"status": "unknown"}
        return status if isinstance(status, dict) else {"status": "unknown"}

    @property
    def is_complete(self) -> bool:
        """Finished: ``summary.json`` present and ``status.json`` says ``complete``."""
        return self.has_summary and self.status.get("status") == "complete"

    def _write_status(self, status: dict[str, Any]) -> None:
        """Replace status.json, keeping :data:`PERSISTENT_STATUS_KEYS` of the old one."""
        previous = self.status
        kept = {k: previous[k] for k in PERSISTENT_STATUS_KEYS if k in previous}
        atomic_write_text(self.status_path, dumps({**kept, **status}))

    def mark_interrupted(self, message: str, signal_name: str) -> None:
        """The run was stopped on request (Ctrl-C, SIGTERM) after a checkpoint of its last
        finished round; ``fedlt run --resume`` continues it."""
        self._close_sinks("interrupted")
        self._write_status(
            {"status": "interrupted", "signal": signal_name, "error": message, "time": time.time()}
        )

    def mark_failed(self, message: str) -> None:
        """Record a failure. If even that write fails (disk full), status.json is rewritten
        in place, and removed as a last resort, so it never keeps saying "running"."""
        self._close_sinks("failed")
        status = {"status": "failed", "error": message, "time": time.time()}
        try:
            self._write_status(status)
            return
        except RunError:
            pass
        previous = self.status
        kept = {k: previous[k] for k in PERSISTENT_STATUS_KEYS if k in previous}
        try:
            _overwrite_in_place(self.status_path, dumps({**kept, **status}).encode())
        except OSError:
            _remove_quietly(self.status_path)

    def record_failure(self, message: str) -> None:
        """Mark the run failed from outside it (a sweep whose run never started or whose
        worker died), creating the folder when the run never did."""
        _make_folder(self.path, exist_ok=True)
        self.mark_failed(message)

    # -- config changes -------------------------------------------------------------
    def config_changed(self) -> tuple[str, str] | None:
        """(recorded, current) sha256 of config.yaml if it changed since the run started;
        None if unchanged or if the run predates the recorded hash."""
        recorded = self.status.get("config_sha256")
        current = sha256_file(self.config_path)
        if not recorded or recorded == current:
            return None
        return recorded, current

    def accept_config_change(self) -> None:
        """Continue with the edited config.yaml: record its hash and the change."""
        change = self.config_changed()
        if change is None:
            return
        previous = self.status
        changes = [*previous.get("config_changes", []), {"from": change[0], "to": change[1]}]
        changes[-1]["time"] = time.time()
        self._write_status({**previous, "config_sha256": change[1], "config_changes": changes})

    # -- metrics --------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_NAME

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to metrics.jsonl (flushed and fsynced). A failed append is
        cut back off, so the log never ends in half a line."""
        line = (metrics_line(record) + "\n").encode()
        size = self._metrics_size()
        try:
            with open(self.metrics_path, "ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError), open(self.metrics_path, "r+b") as fh:
                fh.truncate(size)
            raise RunError(f"cannot append to {self.metrics_path}: {exc.strerror or exc}") from exc
        self.sinks.log(record)

    @property
    def sinks(self) -> MetricSinks:
        """This run's metric sinks (``logging.sinks``; opened on the first record)."""
        if self._sinks is None:
            self._sinks = MetricSinks(self.path, self.config)
        return self._sinks

    def _close_sinks(self, status: str) -> None:
        if self._sinks is not None:
            self._sinks.close(status)

    def read_metrics(self, *, skip_torn: bool = False) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``, oldest first (none without the file). With
        ``skip_torn``, lines that are not JSON (a killed run's torn last line) are dropped
        instead of raising."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            if not line:
                continue
            try:
                records.append(parse_metrics_line(line))
            except json.JSONDecodeError:
                if not skip_torn:
                    raise
        return records

    def _metrics_size(self) -> int:
        return self.metrics_path.stat().st_size if self.metrics_path.is_file() else 0

    # -- checkpoints ----------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def client_state_dir(self) -> Path:
        """Where the federated engine keeps clients' persistent state."""
        return self.path / CLIENT_STATE_DIR

    @property
    def has_checkpoint(self) -> bool:
        """A config and at least one checkpoint file (readable or not): resumable."""
        return self.has_config and bool(self.checkpoints())

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of the checkpoints present, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for p in self.checkpoint_dir.glob("step-*.pt"):
            try:
                found.append((int(p.stem.split("-", 1)[1]), p))
            except ValueError:
                continue
        return sorted(found)

    def save_checkpoint(self, state: dict[str, Any], step: int) -> Path:
        """Atomically save ``state`` as step ``step``; keep the newest two."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "metrics_bytes": self._metrics_size(),
            "state": encode_state(state),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path = self.checkpoint_dir / f"step-{step}.pt"
        atomic_write_bytes(path, buffer.getvalue())
        self._latest = None
        for _, old in self.checkpoints()[:-CHECKPOINTS_KEPT]:
            old.unlink(missing_ok=True)
        return path

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest readable checkpoint (None if there is none at all); changes nothing.

        Unreadable newer ones are listed in ``skipped``; RunError if none is readable.
        """
        if self._latest is not None:
            return self._latest
        found = self.checkpoints()
        if not found:
            return None
        skipped: list[tuple[Path, str]] = []
        for _, path in reversed(found):
            try:
                checkpoint = read_checkpoint(path)
            except RunError as exc:
                skipped.append((path, str(exc)))
                continue
            checkpoint.skipped = skipped
            self._latest = checkpoint
            return checkpoint
        details = "; ".join(reason for _, reason in skipped)
        raise RunError(f"no readable checkpoint in {self.checkpoint_dir}: {details}")

    def load_checkpoint(self) -> tuple[dict[str, Any], int] | None:
        """Latest readable checkpoint's (state, step), truncating metrics.jsonl back to it;
        None if there is none. Unreadable newer checkpoints are renamed
        ``*.pt.unreadable`` and reported on stderr."""
        checkpoint = self.latest_checkpoint()
        if checkpoint is None:
            return None
        for path, reason in checkpoint.skipped:
            warn(f"{reason}; resuming from the older {checkpoint.path.name} instead")
            with contextlib.suppress(OSError):
                path.rename(path.with_name(path.name + ".unreadable"))
        size = checkpoint.metrics_bytes
        if self.metrics_path.is_file() and self.metrics_path.stat().st_size > size:
            with open(self.metrics_path, "r+b") as fh:
                fh.truncate(size)
        status: dict[str, Any] = {
            "status": "running",
            "resumed_from": checkpoint.step,
            "time": time.time(),
        }
        if checkpoint.skipped:
            status["skipped_checkpoints"] = [str(p) for p, _ in checkpoint.skipped]
        self._write_status(status)
        self._latest = None
        return checkpoint.state, checkpoint.step

    # -- outputs --------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, dumps(obj))
        return path

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_NAME

    @property
    def has_summary(self) -> bool:
        return self.summary_path.is_file()

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write ``summary.json`` and mark the run complete (closing its sinks)."""
        path = self.write_json(SUMMARY_NAME, summary)
        self.sinks.log_summary(summary)
        self._close_sinks("complete")
        self._write_status({"status": "complete", "time": time.time()})
        return path

    def read_summary(self) -> dict[str, Any] | None:
        """``summary.json`` (None before the run finished); JSON errors propagate."""
        path = self.summary_path
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def timings_path(self) -> Path:
        return self.path / TIMINGS_NAME

    def write_timings(self, timings: list[dict[str, float]]) -> Path:
        """Replace ``timings.json`` (one record per round: started, train_s, total_s)."""
        return self.write_json(TIMINGS_NAME, timings)

    def read_timings(self) -> list[dict[str, Any]]:
        """The records of ``timings.json``; empty when it is missing, unreadable or not a
        list of records."""
        try:
            timings = json.loads(self.timings_path.read_text())
        except (OSError, json.JSONDecodeError):
            return []
        if not isinstance(timings, list):
            return []
        return [t for t in timings if isinstance(t, dict)]

    @property
    def partition_path(self) -> Path:
        return self.path / PARTITION_NAME

    def write_partition(self, text: str) -> Path:
        """Write ``partition.json`` (the text of :func:`fedlt.partition_file.partition_text`,
        the same schema ``fedlt partition`` writes)."""
        atomic_write_text(self.partition_path, text)
        return self.partition_path

    def read_partition(self) -> dict[str, Any] | None:
        """``partition.json`` as a mapping; None when it is missing, unreadable or not a
        mapping."""
        try:
            data = json.loads(self.partition_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def figure_path(self, name: str) -> Path:
        folder = self.path / FIGURE_DIR
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.png"
