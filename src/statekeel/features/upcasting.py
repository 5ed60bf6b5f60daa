"""Payload schema evolution: versioned values read through upcasters.

A value written with a schema carries its type name and version; reading it
runs the registered upcasters from the stored version up to the version the
code knows, then builds the registered class as a *tolerant reader*: fields
missing from the record get the class defaults, fields the class does not
declare are kept (on ``__statekeel_extra__``) and written back the next time
the value is stored. A record written by a newer schema than the code knows
raises :class:`SchemaVersionError` instead of losing data silently::

    @statekeel.schema("Ticket", version=3)
    @dataclass
    class Ticket:
        id: int
        status: str = "open"        # v3 renamed "state" to "status"
        priority: int = 0           # v2 added it

    statekeel.register_upcaster("Ticket", 1, lambda d: {**d, "priority": 0})
    statekeel.register_upcaster("Ticket", 2, lambda d: {"status": d.get("state", "open"),
                                                        **{k: v for k, v in d.items() if k != "state"}})

    store.app.put("t", statekeel.versioned(Ticket(7)))       # stored as ("Ticket", 3)
    store.app.get("t")                                        # a v1, v2 or v3 record -> Ticket

``versioned(value, "Ticket", 2)`` versions a plain dict the same way. Events
(:mod:`statekeel.features.events`) record their type's version by themselves.

How it is stored: a :class:`Versioned` envelope goes through the codec's
model hook (a class with ``model_dump``/``model_validate``), so the record is
``{"$sk": "pydantic", "cls": "statekeel.features.upcasting:Versioned", "v":
{"type", "version", "data", "cls"}}`` under codec ``tjson1``, on every
backend and inside any value (state, history, notes). Values stored without a
schema never reach this module: the hot path pays nothing.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import ConfigurationError, InvalidInputError, StoreError

__all__ = [
    "SchemaVersionError",
    "Versioned",
    "current_version",
    "register_upcaster",
    "schema",
    "schema_of",
    "upcast",
    "versioned",
]

EXTRA_ATTR = "__statekeel_extra__"
"""Where a read value keeps the fields its class does not declare."""

SCHEMA_ATTR = "__statekeel_schema__"
"""Set on a class by :func:`schema`: its ``(type name, version)``."""

C = TypeVar("C", bound=type)
Upcaster = Callable[[Any], Any]


class SchemaVersionError(StoreError):
    """A record was written by a newer schema of its type than this code knows."""

    def __init__(self, type_name: str, stored: int, known: int) -> None:
        super().__init__(
            f"a stored {type_name!r} record has schema version {stored}, but this code only knows "
            f"up to version {known}; deploy the code that writes version {stored} (with its "
            "upcasters) before reading it, so no field is silently lost"
        )
        self.type_name = type_name
        self.stored = stored
        self.known = known


@dataclass
class _Schema:
    """What the process knows about one type name."""

    name: str
    version: int | None = None
    """The version the registered class writes (None: only upcasters are known)."""
    cls: type | None = None
    upcasters: dict[int, Upcaster] = field(default_factory=dict)

    @property
    def current(self) -> int:
        if self.version is not None:
            return self.version
        return max(self.upcasters) + 1 if self.upcasters else 1

    def check(self, version: int | None, upcasters: dict[int, Upcaster]) -> None:
        """Refuse a registration that would leave an upcaster at or past the class's version."""
        too_new = [v for v in upcasters if version is not None and v >= version]
        if too_new:
            raise ConfigurationError(
                f"{self.name!r} has an upcaster from version {max(too_new)}, but its class says the "
                f"current version is {version}; raise version= on @schema or drop that upcaster"
            )

    def upcast(self, version: int, data: Any) -> Any:
        current = self.current
        if version > current:
            raise SchemaVersionError(self.name, version, current)
        for step in range(version, current):
            fn = self.upcasters.get(step)
            if fn is None:
                raise StoreError(
                    f"cannot read a {self.name!r} record of version {version}: no upcaster from "
                    f"version {step} to {step + 1}; add register_upcaster({self.name!r}, {step}, fn)"
                )
            try:
                data = fn(data)
            except Exception as exc:
                raise StoreError(
                    f"the upcaster of {self.name!r} from version {step} failed on a stored record: {exc!r}"
                ) from exc
        return data


_REGISTRY: dict[str, _Schema] = {}
_LOCK = threading.Lock()


def _entry(type_name: str) -> _Schema:
    """The registry entry of ``type_name``, or a new one (stored by the caller once valid)."""
    if not isinstance(type_name, str) or not type_name:
        raise InvalidInputError(f"a schema type name must be a non-empty str, got {type_name!r}")
    return _REGISTRY.get(type_name) or _Schema(type_name)


def _check_version(version: Any, what: str) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInputError(f"{what} must be an int >= 1, got {version!r}")
    return version


# -- registration -------------------------------------------------------------
def schema(type_name: str, *, version: int) -> Callable[[C], C]:
    """Class decorator: instances of this dataclass or pydantic model are ``type_name`` at ``version``.

    Reads of any older version are upcast and built as this class.
    """
    _check_version(version, "version")

    def register(cls: C) -> C:
        if not (dataclasses.is_dataclass(cls) or hasattr(cls, "model_validate")):
            raise InvalidInputError(
                f"@schema needs a dataclass or a pydantic model, got {cls!r}; decorate it with @dataclass"
            )
        with _LOCK:
            entry = _entry(type_name)
            if entry.cls is not None and entry.cls.__qualname__ != cls.__qualname__:
                raise ConfigurationError(
                    f"schema {type_name!r} is already registered by {entry.cls!r}; give {cls!r} another name"
                )
            entry.check(version, entry.upcasters)
            entry.cls, entry.version = cls, version
            _REGISTRY[type_name] = entry
        setattr(cls, SCHEMA_ATTR, (type_name, version))
        return cls

    return register


def register_upcaster(type_name: str, from_version: int, fn: Upcaster) -> Upcaster:
    """Register ``fn``, turning a ``type_name`` payload of ``from_version`` into ``from_version + 1``.

    ``fn`` gets the stored payload (a dict for dataclasses, pydantic models and
    dicts) and returns the next version's payload; it must not mutate shared state.
    """
    _check_version(from_version, "from_version")
    if not callable(fn):
        raise InvalidInputError(f"an upcaster must be callable, got {fn!r}")
    with _LOCK:
        entry = _entry(type_name)
        entry.check(entry.version, {**entry.upcasters, from_version: fn})
        entry.upcasters[from_version] = fn
        _REGISTRY[type_name] = entry
    return fn


def current_version(type_name: str) -> int | None:
    """The version this code writes for ``type_name`` (None: nothing registered)."""
    entry = _REGISTRY.get(type_name)
    return None if entry is None else entry.current


def has_upcasters(type_name: str) -> bool:
    """True when reads of ``type_name`` may need upcasting (one dict lookup)."""
    return type_name in _REGISTRY


def upcast(type_name: str, version: int, data: Any) -> Any:
    """``data`` of ``type_name`` at ``version`` brought to the current version (unknown type: as is)."""
    entry = _REGISTRY.get(type_name)
    return data if entry is None else entry.upcast(version, data)


def schema_of(value: Any) -> tuple[str, int] | None:
    """``(type name, version)`` of an instance of a :func:`schema` class, else None."""
    found = getattr(type(value), SCHEMA_ATTR, None)
    return found if isinstance(found, tuple) else None


# -- payloads -----------------------------------------------------------------
def payload_of(value: Any) -> Any:
    """The stored form of ``value``: fields (plus kept unknown ones) of a class, else the value."""
    extra = getattr(value, EXTRA_ATTR, None) if not isinstance(value, dict) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif hasattr(type(value), "model_dump") and not isinstance(value, Versioned):
        fields = value.model_dump(mode="python")
    else:
        return value
    return {**extra, **fields} if extra else fields


def build(type_name: str, data: Any) -> Any:
    """``data`` (already upcast) as the class registered for ``type_name``, tolerantly."""
    entry = _REGISTRY.get(type_name)
    cls = entry.cls if entry is not None else None
    if cls is None or not isinstance(data, dict):
        return data
    if dataclasses.is_dataclass(cls):
        return _build_dataclass(type_name, cls, data)
    return _build_model(cls, data)


def _build_dataclass(type_name: str, cls: Any, data: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    try:
        obj = cls(**{k: v for k, v in data.items() if k in fields and fields[k].init})
    except TypeError as exc:
        raise StoreError(
            f"cannot build {cls.__qualname__} from a stored {type_name!r} record ({exc}); "
            "give the field a default or register an upcaster that fills it"
        ) from exc
    for name, value in data.items():
        if name in fields and not fields[name].init:
            object.__setattr__(obj, name, value)
    _keep_extra(obj, {k: v for k, v in data.items() if k not in fields})
    return obj


def _build_model(cls: Any, data: dict[str, Any]) -> Any:
    declared = getattr(cls, "model_fields", {})
    if (getattr(cls, "model_config", None) or {}).get("extra") == "allow":
        return cls.model_validate(data)
    obj = cls.model_validate({k: v for k, v in data.items() if k in declared})
    _keep_extra(obj, {k: v for k, v in data.items() if k not in declared})
    return obj


def _keep_extra(obj: Any, extra: dict[str, Any]) -> None:
    if not extra:
        return
    try:
        object.__setattr__(obj, EXTRA_ATTR, extra)
    except (AttributeError, TypeError):
        warnings.warn(
            f"{type(obj).__qualname__} has __slots__, so the stored fields {sorted(extra)} it does not "
            "declare cannot be kept and will be lost if it is written back; declare them",
            stacklevel=4,
        )


# -- the envelope -------------------------------------------------------------
class Versioned:
    """A value with its schema ``(type, version)``; what :func:`versioned` returns.

    Stored through the codec's model hook; reading one returns the upcast
    value, never the envelope. Do not rename or move this class: stored
    records name it.
    """

    __slots__ = ("type", "version", "value")

    def __init__(self, value: Any, type_name: str, version: int) -> None:
        self.value = value
        self.type = type_name
        self.version = version

    def __repr__(self) -> str:
        return f"Versioned({self.value!r}, {self.type!r}, {self.version})"

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        """The stored form (called by the codec)."""
        cls = type(self.value)
        origin = None if schema_of(self.value) is None else f"{cls.__module__}:{cls.__qualname__}"
        return {"type": self.type, "version": self.version, "data": payload_of(self.value), "cls": origin}

    @classmethod
    def model_validate(cls, stored: dict[str, Any]) -> Any:
        """The upcast value of a stored envelope (called by the codec on read)."""
        return read_versioned(stored)


def versioned(value: Any, type_name: str | None = None, version: int | None = None) -> Versioned:
    """``value`` tagged with its schema, ready to store anywhere a value goes.

    An instance of a :func:`schema` class needs no more arguments; a dict (or
    any value) needs ``type_name`` and, unless the type is registered, ``version``.
    """
    declared = schema_of(value)
    name = type_name or (declared[0] if declared else None)
    if name is None:
        raise InvalidInputError(
            f"versioned() needs a type name for a {type(value).__name__}; pass versioned(value, 'Ticket', 2) "
            "or decorate its class with @statekeel.schema('Ticket', version=2)"
        )
    if version is None:
        version = declared[1] if declared and declared[0] == name else current_version(name)
    if version is None:
        raise InvalidInputError(f"no version known for schema {name!r}; pass versioned(value, {name!r}, 1)")
    return Versioned(value, name, _check_version(version, "version"))


def read_versioned(stored: dict[str, Any]) -> Any:
    """Upcast and build a stored envelope's payload."""
    name, version, data = stored["type"], stored["version"], stored["data"]
    if name not in _REGISTRY and stored.get("cls"):
        _import_module_of(stored["cls"])  # importing the class registers its schema
    if name not in _REGISTRY:
        return data  # nothing known about this type: the payload as written
    return build(name, _REGISTRY[name].upcast(version, data))


def _import_module_of(class_path: str) -> None:
    try:
        importlib.import_module(class_path.partition(":")[0])
    except ImportError:
        pass
