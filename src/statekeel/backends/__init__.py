"""Backends, chosen by URL scheme; each driver is imported only when its scheme is used.

A scheme names a *factory*, ``factory(parsed_url, **options) -> Backend`` (a
:class:`~statekeel.protocol.Backend` subclass is one), given either as the object
or as a lazy ``"module:Attr"`` string imported on first use. The built-in
schemes are lazy strings. A third-party backend adds its scheme in one of two ways:

* an entry point in the ``statekeel.backends`` group (name = scheme, value =
  ``module:Factory``): ``pip install`` the package and ``statekeel.open("mine://…")``
  works with no import. Entry points are read the first time a scheme that is
  not registered is asked for; the module is imported only when its scheme is opened;
* :func:`register_scheme` from code.

A built-in, or a scheme already registered, is replaced only with ``replace=True``.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..protocol import Backend
from ._url import EXAMPLES, ParsedURL, split_url

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendFactory",
    "ParsedURL",
    "backend_options",
    "open_backend",
    "parse",
    "register_scheme",
    "registered_schemes",
]

ENTRY_POINT_GROUP = "statekeel.backends"
"""The entry-point group a third-party backend registers its URL scheme in."""

BackendFactory = Callable[..., Backend]
"""``factory(parsed_url, **options)`` returns an open backend; ``options`` include ``migrate``."""

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_GUIDE = "see docs/writing-a-backend.md"


@dataclass(frozen=True)
class _Lazy:
    """A factory named by ``"module:Attr"``, imported when its scheme is first opened."""

    target: str
    """``"package.module:Attr"`` (``Attr`` may be dotted)."""
    origin: str
    """Where the registration came from, for error messages."""
    extra: str | None = None
    """The ``statekeel[extra]`` that installs a built-in's driver."""


_BUILTIN = "statekeel"
_Entry = BackendFactory | _Lazy
_registry: dict[str, _Entry] = {
    "memory": _Lazy("statekeel.backends.memory:MemoryBackend", _BUILTIN),
    "sqlite": _Lazy("statekeel.backends.sqlite:SQLiteBackend", _BUILTIN),
    "file": _Lazy("statekeel.backends.files:FilesBackend", _BUILTIN),
    "postgresql": _Lazy("statekeel.backends.postgres:PostgresBackend", _BUILTIN, "postgres"),
    "postgres": _Lazy("statekeel.backends.postgres:PostgresBackend", _BUILTIN, "postgres"),
    "redis": _Lazy("statekeel.backends.redis:RedisBackend", _BUILTIN, "redis"),
    "rediss": _Lazy("statekeel.backends.redis:RedisBackend", _BUILTIN, "redis"),
    "valkey": _Lazy("statekeel.backends.redis:RedisBackend", _BUILTIN, "redis"),
    "dynamodb": _Lazy("statekeel.backends.dynamodb:DynamoDBBackend", _BUILTIN, "dynamodb"),
    "tiered": _Lazy("statekeel.backends.tiered:TieredBackend", _BUILTIN, "postgres,redis"),
}
_lock = threading.RLock()
_plugins_loaded = False


# -- registering -------------------------------------------------------------------


def register_scheme(name: str, factory: BackendFactory | str, *, replace: bool = False) -> None:
    """Make ``statekeel.open("name://…")`` open a backend with ``factory``.

    ``factory`` is a :class:`~statekeel.protocol.Backend` subclass or any callable
    ``(ParsedURL, **options) -> Backend``, or a ``"module:Attr"`` string imported
    only when the scheme is first opened. Registering the same factory again is a
    no-op; replacing another one (a built-in included) needs ``replace=True``.
    """
    _check_scheme(name)
    entry = _entry_for(factory)
    with _lock:
        _load_plugins()
        current = _registry.get(name)
        if current is not None and not _same(current, entry) and not replace:
            raise ConfigurationError(
                f"the {name}:// scheme is already registered ({_describe(current)}); "
                "pass replace=True to replace it, or register under another name"
            )
        _registry[name] = entry


def registered_schemes() -> list[str]:
    """Every scheme ``statekeel.open`` accepts: built-ins first, then others in registration order."""
    with _lock:
        _load_plugins()
        return list(_registry)


def _check_scheme(name: object) -> None:
    if not isinstance(name, str) or not _SCHEME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} is not a valid scheme name; use lower-case letters, digits, '+', '-' "
            "or '.', starting with a letter (e.g. 'mybackend'), without '://'"
        )


def _entry_for(factory: object) -> _Entry:
    if isinstance(factory, str):
        if not _TARGET.fullmatch(factory):
            raise ConfigurationError(
                f"{factory!r} is not a factory path; write 'package.module:ClassName'"
            )
        return _Lazy(factory, "registered with register_scheme()")
    if not callable(factory):
        raise ConfigurationError(
            f"a backend factory must be a Backend subclass, a callable (ParsedURL, **options) "
            f"-> Backend, or a 'module:Attr' string; got {type(factory).__name__}"
        )
    return factory


def _same(a: _Entry, b: _Entry) -> bool:
    """The same factory, whoever registered it."""
    if isinstance(a, _Lazy) and isinstance(b, _Lazy):
        return a.target == b.target
    return a is b


def _describe(entry: _Entry) -> str:
    if isinstance(entry, _Lazy):
        return f"{entry.target}, {entry.origin}" if entry.origin != _BUILTIN else f"built in: {entry.target}"
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"


# -- plugins (entry points) ----------------------------------------------------------


def _load_plugins() -> None:
    """Add every ``statekeel.backends`` entry point once, without importing any of them."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        # only for a scheme that is not built in: importlib.metadata is ~18 ms of a process's start
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _add_plugin(ep)


def _add_plugin(ep: EntryPoint) -> None:
    dist = ep.dist.name if ep.dist is not None else "an unnamed distribution"
    entry = _Lazy(f"{ep.module}:{ep.attr}", f"entry point {ep.name!r} of the distribution {dist!r}")
    problem = _plugin_problem(ep, entry)
    if problem:
        warnings.warn(f"statekeel ignores the {entry.origin}: {problem}", RuntimeWarning, stacklevel=2)
    else:
        _registry[ep.name] = entry


def _plugin_problem(ep: EntryPoint, entry: _Lazy) -> str | None:
    if not _SCHEME.fullmatch(ep.name):
        return "its name is not a lower-case scheme name"
    if not ep.attr:
        return f"its value {ep.value!r} names no factory; write 'module:Factory'"
    current = _registry.get(ep.name)
    if current is not None and not _same(current, entry):
        return f"{ep.name}:// is already registered ({_describe(current)})"
    return None


def _lookup(scheme: str) -> _Entry | None:
    entry = _registry.get(scheme)
    if entry is None and not _plugins_loaded:
        _load_plugins()
        entry = _registry.get(scheme)
    return entry


# -- opening -----------------------------------------------------------------------


def parse(url: str) -> ParsedURL:
    """Split ``url`` or raise :class:`ConfigurationError` naming the registered schemes."""
    parsed = split_url(url)
    if _lookup(parsed.scheme) is None:
        raise ConfigurationError(
            f"unknown store scheme {parsed.scheme + '://'!r} in {url!r}; registered: "
            f"{', '.join(s + '://' for s in registered_schemes())} (e.g. {EXAMPLES}). "
            f"A third-party backend registers its scheme with an entry point in the "
            f"{ENTRY_POINT_GROUP!r} group or statekeel.backends.register_scheme(); {_GUIDE}"
        )
    return parsed


def open_backend(url: str, **options: Any) -> Backend:
    """Open the backend that ``url``'s scheme names, importing its driver lazily.

    An option the factory does not take is a :class:`ConfigurationError` listing those it does.
    """
    parsed = parse(url)
    factory = _resolve(parsed.scheme, _registry[parsed.scheme])
    accepted = _keywords(factory)
    unknown = sorted(set(options) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ConfigurationError(
            f"the {parsed.scheme}:// backend takes no option {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted or ()) or 'none'}"
        )
    backend = factory(parsed, **options)
    if not isinstance(backend, Backend):
        raise ConfigurationError(
            f"the {parsed.scheme}:// factory ({_describe(_registry[parsed.scheme])}) returned "
            f"{type(backend).__name__}, not a statekeel.protocol.Backend; {_GUIDE}"
        )
    return backend


def backend_options(url: str) -> list[str] | None:
    """The keyword options the backend of ``url`` takes (None: any, its factory takes ``**options``)."""
    parsed = parse(url)
    return _keywords(_resolve(parsed.scheme, _registry[parsed.scheme]))


def _keywords(factory: BackendFactory) -> list[str] | None:
    """Keyword parameters after the URL, from the factory's signature (None: it takes any)."""
    try:
        params = list(inspect.signature(factory).parameters.values())[1:]
    except (TypeError, ValueError):  # no signature to read: let the factory decide
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _resolve(scheme: str, entry: _Entry) -> BackendFactory:
    if not isinstance(entry, _Lazy):
        return entry
    try:
        found = _import_target(entry.target)
    except Exception as exc:
        if entry.origin == _BUILTIN and not isinstance(exc, ModuleNotFoundError):
            raise  # a bug in statekeel itself, not a configuration problem
        raise _load_error(scheme, entry, exc) from exc
    if not callable(found):
        raise ConfigurationError(f"the {scheme}:// factory {entry.target} ({entry.origin}) is not callable")
    return found


def _import_target(target: str) -> object:
    module_name, _, attr = target.partition(":")
    found: object = importlib.import_module(module_name)
    for name in attr.split("."):
        found = getattr(found, name)
    return found


def _load_error(scheme: str, entry: _Lazy, exc: Exception) -> ConfigurationError:
    if entry.origin == _BUILTIN:  # the optional driver is not installed
        hint = f"pip install 'statekeel[{entry.extra}]'" if entry.extra else "upgrade statekeel"
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else exc
        return ConfigurationError(f"the {scheme}:// backend is not available ({missing} is missing); {hint}")
    return ConfigurationError(
        f"the {scheme}:// backend could not be loaded from {entry.target} ({entry.origin}): "
        f"{type(exc).__name__}: {exc}; check that it is installed in this environment "
        f"(python -c 'import {entry.target.partition(':')[0]}') or uninstall it"
    )
