"""One small registry used for data sources, partitioners, models and strategies.

Entries are plain callables registered by name with a decorator. Besides registered names,
:meth:`Registry.get` accepts a dotted reference ``package.module:attribute`` so that users can
plug their own components in from YAML without touching fedlt.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from fedlt.errors import ConfigError, FedltError, PluginError

T = TypeVar("T")
R = TypeVar("R")


def did_you_mean(name: str, choices: list[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def import_reference(reference: str, key: str = "") -> object:
    """Import ``package.module:attribute`` (attribute may be dotted) and return it."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(key, f"expected 'package.module:callable', got {reference!r}")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(key, f"cannot import module {module_name!r} ({exc})") from exc
    except Exception as exc:  # the plug-in's module body itself raised (or a SyntaxError)
        raise ConfigError(
            key, f"importing module {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigError(
                key, f"module {module_name!r} has no attribute {attribute!r}"
            ) from exc
    return obj


def call_plugin(kind: str, name: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Call component ``fn`` (registered as, or imported from, ``name``).

    fedlt's own errors pass through; any other exception becomes a :class:`PluginError`
    naming the component, e.g. ``partitioner 'mod:fn' raised ZeroDivisionError: ...`` (the
    original exception is chained, so ``fedlt -v`` shows its traceback).
    """
    try:
        return fn(*args, **kwargs)
    except FedltError:
        raise
    except Exception as exc:
        raise PluginError(f"{kind} {name!r} raised {type(exc).__name__}: {exc}") from exc


class Registry(Generic[T]):
    """Name -> component mapping with helpful errors.

    >>> sources = Registry("data source")
    >>> @sources.register("digits")
    ... def load_digits(): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The names in registration order (how ``fedlt report`` orders its methods)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, key: str = "") -> T:
        """Return the entry called ``name``, or import it if it is ``pkg.module:attr``."""
        if not isinstance(name, str) or not name:
            raise ConfigError(key, f"expected the name of a {self.kind}, got {name!r}")
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            obj = import_reference(name, key)
            if not callable(obj):
                raise ConfigError(key, f"{name!r} is not callable")
            return obj  # type: ignore[return-value]
        known = ", ".join(self.names())
        raise ConfigError(
            key,
            f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
            f"known: {known}; or give 'package.module:callable'",
        )
