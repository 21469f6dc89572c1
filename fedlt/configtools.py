"""Typed dataclass <-> plain dict conversion with errors that name the key path.

Used by :mod:`fedlt.config` and by every component with its own options dataclass
(strategies, data sources), so that ``strategy.options.mu: "a"`` fails with
``strategy.options.mu: expected a number, got 'a'`` rather than deep inside training.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from fedlt.errors import ConfigError
from fedlt.registry import did_you_mean

T = TypeVar("T")

INT64_LIMIT = 2**63
"""Integers must satisfy ``-2**63 <= value < 2**63`` (they reach numpy/torch as int64)."""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotation ``tp``; raise ConfigError naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(key, f"expected {_describe(tp)}, got null")
        present = [arg for arg in args if arg is not type(None)]
        if len(present) == 1:  # ``X | None``: X's own error, which may name a nested key
            return convert(value, present[0], key)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(key, f"expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            hint = did_you_mean(str(value), [str(c) for c in choices])
            raise ConfigError(
                key, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if tp is int:
        return _convert_int(value, key)
    if tp is float:
        return _convert_float(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        args = get_args(tp)
        if args:
            return {k: convert(v, args[1], _join(key, str(k))) for k, v in value.items()}
        return dict(value)
    return value


def _convert_int(value: Any, key: str) -> int:
    """An integer that fits in int64 (``3.0`` is accepted as 3)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(key, f"expected an integer, got {value!r}")
    if not -INT64_LIMIT <= value < INT64_LIMIT:
        raise ConfigError(key, f"is out of range for a 64-bit integer [-2**63, 2**63): {value}")
    return value


def _convert_float(value: Any, key: str) -> float:
    """A finite float; ``inf``, ``-inf`` and ``nan`` (``.inf``, ``.nan`` in YAML) are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, f"expected a number, got {value!r}")
    try:
        number = float(value)  # YAML 1.1 reads "1e-4" as a string
    except (ValueError, OverflowError):
        raise ConfigError(key, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(key, f"must be a finite number, got {number}")
    return number


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types name their path.

    After construction, a ``validate(self, prefix)`` method on the dataclass (if present) is
    called so range checks can report their key path too. A field whose metadata has
    ``expected`` (``field(metadata={"expected": "a non-empty list of integers"})``) reports a
    value of the wrong type with that phrase instead of the one derived from its annotation.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            hint = did_you_mean(str(name), list(fields))
            raise ConfigError(
                _join(prefix, str(name)),
                f"unknown key{hint}; expected one of: {', '.join(fields)}",
            )
        kwargs[name] = _convert_field(value, hints[name], fields[name], _join(prefix, name))
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(prefix)
    return obj


def _convert_field(value: Any, tp: Any, spec: dataclasses.Field, key: str) -> Any:
    """:func:`convert`, with the field's ``metadata["expected"]`` phrase in its error."""
    expected = spec.metadata.get("expected")
    try:
        return convert(value, tp, key)
    except ConfigError:
        if expected is None:
            raise
        raise ConfigError(key, f"expected {expected}, got {value!r}") from None


def to_dict(obj: Any) -> Any:
    """Plain (YAML/JSON-serialisable) form of a dataclass tree.

    Fields that are not constructor arguments (``field(init=False)``: values derived when
    the config was resolved, such as typed component options) are left out, so the result
    reads back with :func:`from_dict`.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def require(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(key, message)`` unless ``condition``."""
    if not condition:
        raise ConfigError(key, message)


def require_range(
    value: float,
    key: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ``ConfigError(key, ...)`` unless ``value`` lies in the interval described.

    ``low``/``high`` are the bounds (None: unbounded on that side), closed unless
    ``low_open``/``high_open``. The message states the interval, e.g. ``must lie in [0, 1)``.
    """
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ConfigError(key, f"{_interval(low, high, low_open, high_open)}, got {value}")


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """``must be >= 1``, ``must be > 0`` or ``must lie in (0, 1]``."""
    if high is None:
        return f"must be {'>' if low_open else '>='} {_number(low)}"
    if low is None:
        return f"must be {'<' if high_open else '<='} {_number(high)}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f"must lie in {left}{_number(low)}, {_number(high)}{right}"


def _number(value: float | None) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def require_seed(value: int, key: str) -> None:
    """Seeds are non-negative integers below 2**63 (what numpy and torch both accept)."""
    if not 0 <= value < INT64_LIMIT:
        raise ConfigError(key, f"must be an integer in [0, 2**63), got {value}")


__all__ = [
    "INT64_LIMIT",
    "convert",
    "from_dict",
    "require",
    "require_range",
    "require_seed",
    "to_dict",
    "typing",
]
