"""The short stored form of a chat message, and the bulk decoder of a history.

Most of what a session's history holds is ``{"role": "user", "content": "…"}``:
two keys, both strings. Stored as JSON, every reload runs a JSON parser over
every message. The short form stores the content's UTF-8 bytes as the data and
the role in the codec name, ``msg:<role>`` (e.g. ``msg:assistant``), so reading
one back is a bytes→str and one dict. The codec name is covered by the record's
checksum, like the data.

Only a dict whose keys are exactly ``role`` then ``content`` (that order, so the
value reads back equal *and* in the same order), both ``str``, with a role of 1–16
lowercase letters or ``_``, takes this form; anything else stays ``json``/``tjson1``.
Such a role cannot hold a secret (no detector of :mod:`statekeel.security.detectors`
matches lowercase letters alone), so the secret guard's scan of the content alone
is the scan of the whole value.

Which backends get the short form is theirs to say
(:attr:`statekeel.protocol.Backend.short_messages`): those that keep values as
opaque bytes — and every encrypted store, whose values are ciphertext anyway.
Every backend *reads* it, so records copied anywhere stay readable.

**Sealed**: a codec name is stored in clear, so an encrypted store must not name
the role there. The sealing (:mod:`statekeel.core.sealed`) moves it inside the
ciphertext — :func:`seal_form` stores ``NUL role NUL content`` under codec
``msg+…+aesgcm``, and :func:`open_form` gives ``msg:<role>`` back after
decryption. The leading NUL, which JSON never starts with, keeps a codec name
changed between ``json`` and ``msg`` from reading back as anything.
"""

from __future__ import annotations

import json
import re
from operator import itemgetter
from typing import Any

__all__ = ["PREFIX", "SEALED", "decode_run", "open_form", "open_forms", "seal_form", "short_form", "short_role", "short_value"]

PREFIX = "msg:"
_ROLE = re.compile(r"[a-z_]{1,16}")
_ROLES: dict[str, str | None] = {"json": None}
"""codec name → role (None: not a short form); a few entries, filled as names are met."""
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
SEALED = "msg"
"""The codec base of a short-form message whose role is inside the sealed bytes."""
_NUL = b"\x00"


def short_role(codec: str) -> str | None:
    """The role of a ``msg:<role>`` codec name (None: another codec)."""
    try:
        return _ROLES[codec]
    except KeyError:
        role = codec[len(PREFIX):] if codec.startswith(PREFIX) else ""
        found = role if _ROLE.fullmatch(role) else None
        if len(_ROLES) < 256:  # names come from stored rows: never let them grow the cache unbounded
            _ROLES[codec] = found
        return found


def short_form(value: dict[str, Any]) -> tuple[bytes, str] | None:
    """``(content bytes, "msg:<role>")`` when ``value`` is a plain message, else None."""
    if len(value) != 2:
        return None
    role, content = value.get("role"), value.get("content")
    if type(role) is not str or type(content) is not str or next(iter(value)) != "role":
        return None
    name = PREFIX + role
    if short_role(name) is None:
        return None
    try:
        return content.encode("utf-8"), name
    except UnicodeEncodeError:  # a lone surrogate: the JSON path names where it is
        return None


def short_value(codec: str, data: bytes) -> dict[str, str] | None:
    """The message a ``msg:<role>`` record holds (None: ``codec`` is not a short form)."""
    role = short_role(codec)
    if role is None:
        return None
    return {"role": role, "content": data.decode("utf-8")}


def seal_form(data: bytes, codec: str) -> tuple[bytes, str]:
    """``(NUL role NUL data, "msg+<steps>")`` for a ``msg:<role>[+<steps>]`` value about to be
    encrypted (the role moves inside the plaintext); anything else as it is."""
    base, plus, steps = codec.partition("+")
    role = short_role(base)
    if role is None:
        return data, codec
    return b"".join((_NUL, role.encode(), _NUL, data)), SEALED + plus + steps


def open_form(data: bytes, codec: str) -> tuple[bytes, str] | None:
    """The inverse of :func:`seal_form` on decrypted ``data`` stored under ``msg[+<steps>]``;
    None when either is not in that form (the codec name was changed: ``msg:<role>`` is never
    sealed as it is, so a stored role cannot be swapped for the sealed one)."""
    end = data.find(_NUL, 1, 18) if data[:1] == _NUL else -1
    if end < 2:
        return None
    role = data[1:end]
    try:
        name = _OPENED[role, codec]  # an encrypted reload opens thousands under the same few names
    except KeyError:
        name = _opened_name(role, codec)
    return None if name is None else (data[end + 1 :], name)


def open_forms(datas: list[bytes], codec: str) -> list[tuple[bytes, str]] | None:
    """:func:`open_form` of many decrypted values stored under one codec (a reload) in one loop, each
    role's name looked up once; None when one is not in that form (the caller then opens them one
    by one, naming it)."""
    names: dict[bytes, str] = {}
    out: list[tuple[bytes, str]] = []
    add = out.append
    for data in datas:
        end = data.find(_NUL, 1, 18)
        if end < 2 or data[0]:
            return None
        role = data[1:end]
        name = names.get(role)
        if name is None:
            found = _OPENED.get((role, codec)) or _opened_name(role, codec)
            if found is None:
                return None
            name = names[role] = found
        add((data[end + 1 :], name))
    return out


_OPENED: dict[tuple[bytes, str], str | None] = {}
"""(sealed role, stored codec) → the codec name :func:`open_form` gives back (None: not that form)."""


def _opened_name(role: bytes, codec: str) -> str | None:
    name = None
    if codec.partition("+")[0] == SEALED and short_role(PREFIX + role.decode("latin-1")) is not None:
        name = PREFIX + role.decode("latin-1") + codec[len(SEALED) :]
    if len(_OPENED) < 256:  # names come from stored rows: never let them grow the cache unbounded
        _OPENED[role, codec] = name
    return name


def decode_run(items: list[tuple[bytes, str]]) -> list[Any] | None:
    """The values of a history of plain ``json`` and short-form records, in bulk.

    One ``json.loads`` for all the ``json`` ones, one bytes→str per short one.
    None when any item has another codec or does not decode (the caller then
    decodes item by item, which names the damaged record).
    """
    codecs = set(map(_SECOND, items))
    roles = {c: short_role(c) for c in codecs}
    if any(r is None and c != "json" for c, r in roles.items()):
        return None
    try:
        if "json" not in codecs:
            return [{"role": roles[c], "content": d.decode()} for d, c in items]
        parsed = _json_run([d for d, c in items if c == "json"])
        if parsed is None:
            return None
        if len(codecs) == 1:
            return parsed
        it = iter(parsed)
        return [next(it) if (r := roles[c]) is None else {"role": r, "content": d.decode()} for d, c in items]
    except (UnicodeDecodeError, AttributeError, TypeError):  # bad UTF-8, or not bytes
        return None


def _json_run(datas: list[bytes]) -> list[Any] | None:
    """``[json.loads(d) for d in datas]`` in one parse; None if it fails or miscounts (damage).

    The brackets go onto the first and last items (small copies) rather than
    around the joined buffer (two copies of the whole history).
    """
    n = len(datas)
    if n == 1:
        datas = [b"[" + datas[0] + b"]"]
    else:
        datas = [b"[" + datas[0], *datas[1:-1], datas[-1] + b"]"]
    try:
        values = json.loads(b",".join(datas))
    except (ValueError, RecursionError, TypeError):
        return None
    return values if type(values) is list and len(values) == n else None
