"""File and folder names of the files backend: safe everywhere, and reversible.

A key ``session/support-42/state/ticket`` is a path of components; each
component becomes one folder or file *stem* through :func:`encode`:

* ``a-z``, ``0-9``, ``-`` and ``_`` stay as they are (most ids read as typed);
* an upper-case letter ``X`` becomes ``^x``, so names never differ only in case
  (case-insensitive file systems: macOS, Windows) and ``Ticket`` reads as ``^ticket``;
* every other character — ``.``, ``%``, ``:``, space, non-ASCII … — becomes
  ``~hh`` per UTF-8 byte (``config.yaml`` -> ``config~2eyaml``). So a stem never
  contains a dot (suffixes like ``.json`` are never ambiguous), never starts with
  one (``.``, ``..`` and hidden files are impossible), and is plain ASCII (git,
  zip and Unicode normalisation leave it alone);
* the empty component is ``~``; a stem that would be a reserved Windows device
  name (``con``, ``nul``, ``com1`` …) gets its first letter escaped;
* a stem longer than :data:`MAX_STEM` characters is replaced by ``~~`` and 40 hex
  digits of its SHA-256, with the real component in a ``<stem>.name`` file beside it.

Decoding is exact, and only *canonical* names decode: a file a person drops into
the folder (``README.md``) is simply not part of the store.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_STEM", "encode", "decode", "is_hashed", "LONG_PREFIX"]

MAX_STEM = 120
"""Longest stem written as is; with suffixes and temp names far below 255 bytes."""

LONG_PREFIX = "~~"

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_HEX = frozenset("0123456789abcdef")
_PLAIN = re.compile(r"[a-z0-9_-]{1,%d}" % 120)
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{d}{i}" for d in ("com", "lpt") for i in range(10)]
)


def _escape_bytes(ch: str) -> str:
    return "".join(f"~{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))


def encode(component: str) -> str:
    """The stem of ``component`` (may be a ``~~`` hash name; see :func:`is_hashed`)."""
    if component == "":
        return "~"
    out: list[str] = []
    for ch in component:
        if ch in _SAFE:
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("^" + ch.lower())
        else:
            out.append(_escape_bytes(ch))
    stem = "".join(out)
    if stem in _RESERVED:
        stem = _escape_bytes(stem[0]) + stem[1:]
    if len(stem) > MAX_STEM:
        digest = hashlib.sha256(component.encode("utf-8", "surrogatepass")).hexdigest()
        return LONG_PREFIX + digest[:40]
    return stem


def is_hashed(stem: str) -> bool:
    """True for ``~~<hash>`` stems, whose component lives in ``<stem>.name``."""
    return stem.startswith(LONG_PREFIX)


def decode(stem: str) -> str | None:
    """The component ``stem`` encodes, or None if it is not a canonical stem."""
    if _PLAIN.fullmatch(stem):  # the common case: a plain lower-case id reads as itself
        return None if stem in _RESERVED else stem
    if stem == "~":
        return ""
    raw = bytearray()
    i, n = 0, len(stem)
    while i < n:
        ch = stem[i]
        if ch in _SAFE:
            raw.append(ord(ch))
            i += 1
        elif ch == "^" and i + 1 < n and "a" <= stem[i + 1] <= "z":
            raw.append(ord(stem[i + 1].upper()))
            i += 2
        elif ch == "~" and i + 2 < n and stem[i + 1] in _HEX and stem[i + 2] in _HEX:
            raw.append(int(stem[i + 1 : i + 3], 16))
            i += 3
        else:
            return None
    try:
        component = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    return component if encode(component) == stem else None
