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
    # "%" first (the others add one); five C-level passes instead of one Python step per character
    return (component.replace("%", "%25").replace("/", "%2F").replace("{", "%7B").replace("}", "%7D")
            .replace("\x00", "%00"))  # fmt: skip


_OTHER_THAN_ESCAPE = re.compile("%(?!25|2F|7B|7D|00)").search
"""A ``%`` that does not start one of the sequences :func:`escape` writes."""


def unescape(component: str) -> str:
    """Reverse :func:`escape` (any other ``%XX`` is decoded too, the slower way)."""
    if "%" not in component:
        return component
    if _OTHER_THAN_ESCAPE(component) is None:
        # every "%" starts one of escape's sequences, so these passes cannot meet a "%" another made
        return (component.replace("%2F", "/").replace("%7B", "{").replace("%7D", "}").replace("%00", "\x00")
                .replace("%25", "%"))  # fmt: skip
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
