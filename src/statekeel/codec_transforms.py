"""The codec's byte-level steps after JSON (:class:`Transform`): the built-in compressions.

``+zlib`` and ``+zstd`` in a stored codec name (``json+zstd``, ``msg:user+zlib+aesgcm``) name
these; encryption is a step of the same kind, applied below the features
(:mod:`statekeel.core.sealed`). A transform gets the record's key as ``context``.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Protocol

from .errors import ConfigurationError

__all__ = ["BUILTIN_TRANSFORMS", "Transform", "inflate"]


class Transform(Protocol):
    """A byte-level step after JSON: compression, encryption."""

    name: str

    def encode(self, data: bytes, context: str) -> bytes: ...

    def decode(self, data: bytes, context: str) -> bytes: ...


try:  # ISA-L inflates the zlib format about twice as fast as zlib itself (the same bytes out)
    from isal.isal_zlib import decompress as inflate
except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel
    inflate = zlib.decompress


class _Zlib:
    name = "zlib"

    def encode(self, data: bytes, context: str) -> bytes:
        return zlib.compress(data, 6)

    def decode(self, data: bytes, context: str) -> bytes:
        return inflate(data)


class _Zstd(threading.local):
    """zstandard's (de)compressor objects are not thread-safe (concurrent use
    corrupts frames), and one codec serves every thread of a store: each
    thread gets its own pair, made on first use in that thread."""

    name = "zstd"

    def __init__(self) -> None:
        try:
            import zstandard
        except ModuleNotFoundError:
            raise ConfigurationError(
                "zstd compression needs the zstandard package: pip install 'statekeel[zstd]'"
            ) from None
        self._c = zstandard.ZstdCompressor(level=3)
        self._d = zstandard.ZstdDecompressor()

    def encode(self, data: bytes, context: str) -> bytes:
        return self._c.compress(data)

    def decode(self, data: bytes, context: str) -> bytes:
        return self._d.decompress(data)


BUILTIN_TRANSFORMS: dict[str, Callable[[], Transform]] = {"zlib": _Zlib, "zstd": _Zstd}
