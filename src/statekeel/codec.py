"""Turning values into stored bytes and back, exactly.

A stored record names the codec that wrote it, e.g. ``json``, ``tjson1`` or
``tjson1+zstd``, so data written by old settings stays readable:

* ``json`` — the value was plain JSON (dicts with str keys, lists, str, int,
  finite float, bool, None); stored as compact UTF-8 JSON, queryable with SQL.
* ``tjson1`` — tagged JSON, format version 1: values JSON cannot express are
  written as ``{"$sk": tag, ...}`` objects and read back as the same type:
  datetime, date, time, timedelta, UUID, Decimal, bytes, tuple, set, frozenset,
  non-finite floats, Enum members, dataclasses and pydantic models.
* ``msg:<role>`` — a plain chat message ``{"role": …, "content": …}``, stored as
  its content's UTF-8 bytes (see :mod:`statekeel.codec_msg`), where the backend
  asks for it (:attr:`~statekeel.protocol.Backend.short_messages`).
* ``raw`` — bytes stored as they are (:meth:`Codec.encode_bytes`), read back as ``bytes``: a
  caller's own binary format, which JSON could only carry as base64 (the LangGraph saver's
  value records).
* ``+zlib`` / ``+zstd`` — compression, and later transforms such as
  encryption, are suffixes applied in order after the JSON step.

A value that cannot be encoded raises :class:`SerializationError` naming the
path inside it (``state['ticket']['items'][3]``): a type it does not know, a
string with a lone surrogate (not valid UTF-8), an int of more than 4,300
digits (Python's int/str limit), or an instance of a class that cannot be
imported back by its path (defined in a function, in ``__main__``, or shadowed).
One larger than ``max_record_bytes`` raises :class:`RecordTooLargeError`.
Both happen before anything is written.

Stored bytes that cannot be decoded (damaged at rest, or not written by
statekeel) raise :class:`CorruptionError` naming the record, never a raw
``JSONDecodeError``, ``zlib.error`` or ``KeyError``; a failed authenticated
decryption stays an :class:`IntegrityError`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import json
import math
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .codec_msg import decode_run, short_form, short_value
from .codec_transforms import BUILTIN_TRANSFORMS as _BUILTIN_TRANSFORMS
from .codec_transforms import Transform
from .errors import (
    ConfigurationError,
    CorruptionError,
    KeyUnavailableError,
    RecordTooLargeError,
    SerializationError,
    StatekeelError,
    StoreError,
)

if TYPE_CHECKING:
    from .security.guard import SecretGuard

__all__ = ["Codec", "Transform", "DEFAULT_MAX_RECORD_BYTES"]

DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
_TAG = "$sk"
_RAW = "raw"
_PLAIN_INT = 10**18
"""Ints below this size are their own JSON; the guard's detectors need 32+ characters for digits alone."""



def _make_dumps() -> Callable[[Any], str]:
    """A compact JSON encoder built once (json.dumps builds one per call)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    enc = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda tree: "".join(enc(tree, 0))


_dumps = _make_dumps()




# -- encoding ---------------------------------------------------------------
class _Walker:
    """Converts a value to a JSON tree, recording whether any tag was needed."""

    __slots__ = ("tagged",)

    def __init__(self) -> None:
        self.tagged = False

    def tag(self, name: str, **fields: Any) -> dict[str, Any]:
        self.tagged = True
        return {_TAG: name, **fields}

    def walk(self, v: Any, path: str) -> Any:
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            return v
        if t is float:
            return v if math.isfinite(v) else self.tag("float", v=repr(v))
        if t is dict:
            return self._dict(v, path)
        if t is list:
            return [self.walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
        return self._special(v, path)

    def _dict(self, v: dict[Any, Any], path: str) -> Any:
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise SerializationError(
                    f"cannot store {path}: dict key {_short(k)} is a {type(k).__name__}, "
                    "but keys must be str; convert the keys with str()",
                    path,
                )
            tx = type(x)
            # strings and ints are most of what agents store: no path string for them
            out[k] = x if tx is str or tx is int or tx is bool or x is None else self.walk(x, f"{path}[{k!r}]")
        if _TAG in v:
            return self.tag("dict", v=[[k, x] for k, x in out.items()])
        return out

    def _special(self, v: Any, path: str) -> Any:
        if isinstance(v, enum.Enum):
            return self.tag("enum", cls=_class_path(v, path), v=self.walk(v.value, path))
        if isinstance(v, dt.datetime):
            return self.tag("datetime", v=v.isoformat())
        if isinstance(v, dt.date):
            return self.tag("date", v=v.isoformat())
        if isinstance(v, dt.time):
            return self.tag("time", v=v.isoformat())
        if isinstance(v, dt.timedelta):
            return self.tag("timedelta", v=[v.days, v.seconds, v.microseconds])
        if isinstance(v, uuid.UUID):
            return self.tag("uuid", v=str(v))
        if isinstance(v, Decimal):
            return self.tag("decimal", v=str(v))
        if isinstance(v, (bytes, bytearray)):
            kind = "bytes" if isinstance(v, bytes) else "bytearray"
            return self.tag(kind, v=base64.b64encode(v).decode("ascii"))
        if isinstance(v, (tuple, set, frozenset)):
            items = sorted(v, key=_short) if isinstance(v, (set, frozenset)) else v
            kind = "set" if isinstance(v, set) else "frozenset" if isinstance(v, frozenset) else "tuple"
            return self.tag(kind, v=[self.walk(x, f"{path}[{i}]") for i, x in enumerate(items)])
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            fields = {f.name: self.walk(getattr(v, f.name), f"{path}.{f.name}") for f in dataclasses.fields(v)}
            return self.tag("dataclass", cls=_class_path(v, path), v=fields)
        if hasattr(type(v), "model_dump") and hasattr(type(v), "model_validate"):
            dumped = v.model_dump(mode="python")
            return self.tag("pydantic", cls=_class_path(v, path), v=self.walk(dumped, path))
        raise SerializationError(
            f"cannot store {path}: a {type(v).__module__}.{type(v).__qualname__} is not serialisable; "
            "store JSON types, datetime/date/UUID/Decimal/bytes, a dataclass or a pydantic model",
            path,
        )


def _short(v: Any) -> str:
    """``repr(v)`` (what sets are ordered by), or a stand-in when it has none (an int over 4,300
    digits: the walk then refuses it with the path)."""
    try:
        return repr(v)
    except ValueError:
        return f"<{type(v).__name__}>"


_IMPORTABLE: dict[type, str] = {}
"""Classes whose path was checked to import back to the same class (checked once per class)."""


def _class_path(v: Any, path: str) -> str:
    """``module:Qualname`` of ``v``'s class, refused unless reading it back will find the same class."""
    cls = type(v)
    found = _IMPORTABLE.get(cls)
    if found is not None:
        return found
    if "<locals>" in cls.__qualname__:
        raise SerializationError(
            f"cannot store {path}: {cls.__qualname__} is defined inside a function, so it "
            "cannot be imported when the value is read back; define it at module level",
            path,
        )
    where = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__" or _resolves(where) is not cls:
        raise SerializationError(
            f"cannot store {path}: its class {where} cannot be imported back by that path "
            "(defined in __main__, in a module that cannot be imported, or shadowed by another "
            "class of that name), so nothing could read the value; define it in an importable module",
            path,
        )
    _IMPORTABLE[cls] = where
    return where


def _resolves(where: str) -> Any:
    try:
        return _import(where)
    except Exception:  # any failure to import means: not the same class
        return None


def _bad_leaf(tree: Any, path: str) -> tuple[str, str] | None:
    """Where in an encoded tree a string or int cannot be written, and why (only after a failure)."""
    if type(tree) is str:
        if any("\ud800" <= ch <= "\udfff" for ch in tree):
            return path, "a string with a lone surrogate, which is not valid UTF-8; decode the text properly"
        return None
    if type(tree) is int:
        if tree.bit_length() > 14_000:  # 4,300 decimal digits is ~14,284 bits
            try:
                str(tree)
            except ValueError:
                return path, (f"an int of more than {sys.get_int_max_str_digits():,} digits; "
                              "store it as bytes or as a str you convert yourself")
        return None
    if type(tree) is list:
        return next((b for i, x in enumerate(tree) if (b := _bad_leaf(x, f"{path}[{i}]"))), None)
    if type(tree) is dict:
        if (bad := next((b for k in tree if (b := _bad_leaf(k, f"{path} key {k!r}"))), None)):
            return bad
        inner = tree.get("v") if _TAG in tree else None
        if inner is not None:
            return _bad_leaf(inner, path)
        return next((b for k, x in tree.items() if (b := _bad_leaf(x, f"{path}[{k!r}]"))), None)
    return None


# -- decoding ---------------------------------------------------------------
def _import(path: str) -> Any:
    module, _, qual = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _new_dataclass(cls: Any, fields: dict[str, Any]) -> Any:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise StoreError(f"stored dataclass {cls!r} is no longer a dataclass")
    obj = cls.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


_UNTAG: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda d: float(d["v"]),
    "dict": lambda d: {k: v for k, v in d["v"]},
    "datetime": lambda d: dt.datetime.fromisoformat(d["v"]),
    "date": lambda d: dt.date.fromisoformat(d["v"]),
    "time": lambda d: dt.time.fromisoformat(d["v"]),
    "timedelta": lambda d: dt.timedelta(days=d["v"][0], seconds=d["v"][1], microseconds=d["v"][2]),
    "uuid": lambda d: uuid.UUID(d["v"]),
    "decimal": lambda d: Decimal(d["v"]),
    "bytes": lambda d: base64.b64decode(d["v"], validate=True),
    "bytearray": lambda d: bytearray(base64.b64decode(d["v"], validate=True)),
    "tuple": lambda d: tuple(d["v"]),
    "set": lambda d: set(d["v"]),
    "frozenset": lambda d: frozenset(d["v"]),
    "enum": lambda d: _import(d["cls"])(d["v"]),
    "dataclass": lambda d: _new_dataclass(_import(d["cls"]), d["v"]),
    "pydantic": lambda d: _import(d["cls"]).model_validate(d["v"]),
}


def _object_hook(d: dict[str, Any]) -> Any:
    tag = d.get(_TAG)
    if tag is None:
        return d
    try:
        untag = _UNTAG[tag]
    except (KeyError, TypeError):
        raise ValueError(f"unknown tag {tag!r}") from None  # Codec.decode makes it a CorruptionError
    if tag in ("enum", "dataclass", "pydantic"):
        _require_class(tag, d)
    return untag(d)


def _require_class(tag: str, d: dict[str, Any]) -> None:
    """A stored class that no longer imports is a code problem (moved or renamed), not damage."""
    where = d.get("cls")
    if type(where) is str and where.count(":") == 1 and _resolves(where) is None:
        raise StoreError(
            f"cannot read a stored {tag} value: its class {where} cannot be imported here; install or "
            "restore the module that defines it (or register an upcaster that maps it)"
        )


def _corrupt(context: str, codec: str, exc: BaseException) -> CorruptionError:
    where = context or "?"
    return CorruptionError(
        f"stored bytes of {where!r} (codec {codec!r}) cannot be decoded ({type(exc).__name__}: "
        f"{str(exc)[:200]}); they were damaged or not written by statekeel. Run `statekeel doctor URL` "
        "to list every damaged record, then restore it from a backup or delete it",
        where,
    )


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    """A size option: an int (not bool) of at least ``minimum`` bytes."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{what} must be a whole number of bytes >= {minimum}, e.g. 16_000_000; got {value!r}")
    return value


# -- the codec --------------------------------------------------------------
class Codec:
    """Encodes values for storage and decodes what any codec name wrote."""

    def __init__(
        self,
        *,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        compress: str | None = None,
        compress_min_bytes: int = 512,
        transforms: list[Transform] | None = None,
        guard: SecretGuard | None = None,
        short_messages: bool = False,
    ) -> None:
        self.max_record_bytes = _positive_int(max_record_bytes, "max_record_bytes")
        self.guard = guard
        self.short_messages = short_messages
        """Store plain chat messages in the short ``msg:<role>`` form (the backend's choice)."""
        self.context_prefix = ""
        """Prepended to every context given to transforms (a tenant's key prefix)."""
        self.compress_min_bytes = _positive_int(compress_min_bytes, "compress_min_bytes", minimum=0)
        self._compressor = self._builtin(compress) if compress else None
        self._transforms: list[Transform] = list(transforms or [])
        self._known: dict[str, Transform] = {t.name: t for t in self._transforms}

    def for_context(self, prefix: str) -> Codec:
        """This codec with ``prefix`` in every transform context (tenants: their own AAD and keys)."""
        return self._with(context_prefix=self.context_prefix + prefix)

    def compressing(self, name: str, *, min_bytes: int = 0) -> Codec:
        """This codec (same transforms, guard and limits) compressing with ``name`` from ``min_bytes`` up."""
        return self._with(_compressor=self._builtin(name), compress_min_bytes=min_bytes)

    def _unguarded(self) -> Codec:
        """This codec without the secret guard (to encode an already redacted value)."""
        return self._with(guard=None)

    def _with(self, **changes: Any) -> Codec:
        clone = object.__new__(Codec)
        clone.__dict__.update(self.__dict__, **changes)
        return clone

    @staticmethod
    def _builtin(name: str) -> Transform:
        if name not in _BUILTIN_TRANSFORMS:
            raise ConfigurationError(f"unknown compression {name!r}; use 'zstd' or 'zlib'")
        return _BUILTIN_TRANSFORMS[name]()

    def encode(self, value: Any, path: str = "value", context: str = "") -> tuple[bytes, str]:
        """Bytes and codec name for ``value``; ``path`` names it in errors."""
        if type(value) is int and -_PLAIN_INT < value < _PLAIN_INT:  # a counter: no tree, no JSON encoder,
            return self._finish(str(value).encode(), "json", path, context)  # no secret in 18 digits
        if self.short_messages and type(value) is dict:
            short = short_form(value)  # a plain message: no tree walk, no JSON
            if short is not None:
                if self.guard is not None and self.guard.suspicious(short[0]):
                    cleaned = self.guard.check(value, path)  # raises in refuse mode
                    if cleaned is not value:
                        return self._unguarded().encode(cleaned, path, context)
                return self._finish(short[0], short[1], path, context)
        walker = _Walker()
        try:
            tree = walker.walk(value, path)
        except RecursionError:
            raise SerializationError(
                f"cannot store {path}: it contains itself or is nested too deeply; store a tree of values",
                path,
            ) from None
        name = "tjson1" if walker.tagged else "json"
        try:
            data = _dumps(tree).encode("utf-8")
        except ValueError as exc:  # UnicodeEncodeError, or an int over the int/str limit
            where, why = _bad_leaf(tree, path) or (path, str(exc))
            raise SerializationError(f"cannot store {where}: it holds {why}", where) from None
        if self.guard is not None and self.guard.suspicious(data):
            cleaned = self.guard.check(value, path)  # raises in refuse mode
            if cleaned is not value:
                return self._unguarded().encode(cleaned, path, context)
        return self._finish(data, name, path, context)

    def encode_bytes(self, data: bytes, path: str = "value", context: str = "") -> tuple[bytes, str]:
        """``data`` as it is, under codec ``raw`` (compression, transforms and the size limit as for
        any value); :meth:`decode` gives the same ``bytes`` back. For a caller's own binary format:
        the secret guard does not look into opaque bytes."""
        return self._finish(bytes(data), _RAW, path, context)

    def _finish(self, data: bytes, name: str, path: str, context: str) -> tuple[bytes, str]:
        """Compression and the transforms after the first step, then the size limit."""
        if self._compressor is not None and len(data) >= self.compress_min_bytes:
            data = self._compressor.encode(data, context)
            name += "+" + self._compressor.name
        for t in self._transforms:
            data = t.encode(data, self.context_prefix + context)
            name += "+" + t.name
        if len(data) > self.max_record_bytes:
            raise RecordTooLargeError(
                f"cannot store {path}: it encodes to {len(data):,} bytes, over the limit of "
                f"{self.max_record_bytes:,}; store less, or raise max_record_bytes when opening the store",
                len(data),
                self.max_record_bytes,
            )
        return data, name

    def decode(self, data: bytes, codec: str, context: str = "") -> Any:
        """The value that ``encode`` turned into ``data`` under codec ``codec``.

        Bytes that do not decode raise :class:`CorruptionError` naming ``context``
        (the record's key), whatever step failed.
        """
        try:
            return self._decode(data, codec, context)
        except StatekeelError:
            raise
        except Exception as exc:  # JSON, UTF-8, zlib, zstd, base64, a tag's fields: all mean damaged bytes
            raise _corrupt(context, codec, exc) from exc

    def _decode(self, data: bytes, codec: str, context: str) -> Any:
        base, *steps = codec.split("+")
        for step in reversed(steps):
            data = self._transform(step).decode(data, self.context_prefix + context)
        if base == "json":
            return json.loads(data)
        if base == "tjson1":
            return json.loads(data, object_hook=_object_hook)
        if base == _RAW:
            return bytes(data)
        message = short_value(base, data)
        if message is not None:
            return message
        raise StoreError(
            f"a record was written with codec {codec!r}, which this statekeel does not know; "
            "upgrade the statekeel package"
        )

    def decode_many(self, items: list[tuple[bytes, str]], context: str = "") -> list[Any]:
        """Decode several records of one context: a history of ``json`` and short-form messages
        in bulk (:func:`statekeel.codec_msg.decode_run`: one JSON parse for all, no parse for messages).

        If that fails (another codec, or a damaged item), each is decoded on its own,
        so the error is the one :meth:`decode` gives.
        """
        values = decode_run(items) if items else []
        if values is not None:
            return values
        return [self.decode(data, codec, context) for data, codec in items]

    def _transform(self, name: str) -> Transform:
        found = self._known.get(name)
        if found is None:
            if name == "aesgcm":
                raise KeyUnavailableError(
                    "this record is encrypted and the store was opened without its key: open it with "
                    "encryption=statekeel.Encryption(master_key=...) (CLI: set STATEKEEL_MASTER_KEY)"
                )
            if name not in _BUILTIN_TRANSFORMS:
                raise StoreError(
                    f"a record needs the {name!r} transform to be read; configure it when opening the store"
                )
            found = self._known[name] = _BUILTIN_TRANSFORMS[name]()
        return found
