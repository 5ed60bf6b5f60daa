"""How feature-level names become backend keys.

A key is a ``/``-separated path of escaped components, e.g.
``session/support-42/state/ticket``. Escaping makes any user id safe — quotes,
NUL, ``/``, ``%``, ``{``, ``}`` and ``..`` all round-trip — so a prefix scan of
``session/a/`` can never match session ``a/b``.

The *partition* of a key is its first two components (``session/support-42``).
Everything one session owns shares a partition, so a batch that stays inside it
works on backends that shard by partition (Redis Cluster hash tags).
"""

from __future__ import annotations

import re

from ..errors import InvalidInputError

_ESCAPED = {"%": "%25", "/": "%2F", "{": "%7B", "}": "%7D", "\x00": "%00"}
_NEEDS_ESCAPING = re.compile("[%/{}\x00]").search
"""Whether a component holds a character :data:`_ESCAPED` replaces (one C call: keys are built everywhere)."""


def escape(component: str) -> str:
    """Escape one path component so it contains no separator or hash-tag brace."""
    if not isinstance(component, str):
        raise InvalidInputError(
            f"ids and keys must be str, got {type(component).__name__} {component!r}; "
            "convert it with str() first"
        )
    if component == "":
        raise InvalidInputError("ids and keys must not be empty strings")
    if _NEEDS_ESCAPING(component) is None:
        return component
    for char, sequence in _ESCAPED.items():  # "%" first (the others add one): C-level passes, not a step per character
        component = component.replace(char, sequence)
    return component


_OTHER_THAN_ESCAPE = re.compile("%(?!" + "|".join(seq[1:] for seq in _ESCAPED.values()) + ")").search
"""A ``%`` that does not start one of the sequences :func:`escape` writes."""
_UNESCAPED = tuple((seq, char) for char, seq in reversed(_ESCAPED.items()))
""":data:`_ESCAPED` backwards, ``"%25"`` last."""


def unescape(component: str) -> str:
    """Reverse :func:`escape` (any other ``%XX`` is decoded too, the slower way)."""
    if "%" not in component:
        return component
    if _OTHER_THAN_ESCAPE(component) is None:
        for sequence, char in _UNESCAPED:  # every "%" starts one of them: no pass meets a "%" another made
            component = component.replace(sequence, char)
        return component
    out: list[str] = []
    i = 0
    while i < len(component):
        if component[i] == "%":
            out.append(chr(int(component[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(component[i])
            i += 1
    return "".join(out)


def join(*components: str) -> str:
    """Build a key from raw components, escaping each."""
    return "/".join([escape(c) for c in components])


def split(key: str) -> list[str]:
    """Split a key back into raw components."""
    return [unescape(c) for c in key.split("/")]


def partition(key: str) -> str:
    """The first two components of ``key``: the unit a batch should stay inside."""
    parts = key.split("/", 2)
    return "/".join(parts[:2])


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix + "\U0010ffff"
