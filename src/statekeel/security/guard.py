"""The secret guard: credentials are caught before anything is persisted.

Agent state is a favourite place for leaked credentials (a tool's output, a
pasted ``.env``). Every value is checked after it is serialised and before it
is compressed, encrypted or written. Modes:

* ``refuse`` (default) — raise :class:`~statekeel.errors.SecretDetectedError`
  naming the path of the offending string and the kind of secret; nothing is
  written;
* ``redact`` — replace each secret with ``[REDACTED:<kind>]`` and store the rest;
* ``off`` — no check.

What is detected, and the exact rule for passwords (a ``password`` field or
``password=…`` assignment is refused at any length; an empty value and obvious
placeholders pass), is in :mod:`statekeel.security.detectors`. The fast path is
one linear-time RE2 search over the serialised record; only on a hit are the
strings walked, the exact detectors applied and the path named — for a session
append, ``session['s'].append messages[3]['content']``: the index of the message
among the ones passed to that call, counting from 0. Recall and false positives
are measured on :mod:`statekeel.testing.secret_corpus` by
``benchmarks/bench_secret_guard.py`` and asserted by ``tests/test_secret_guard.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

from ..errors import ConfigurationError, SecretDetectedError
from .detectors import SHORTEST, Finding, fast_search, field_finding, find_secrets

__all__ = ["SecretGuard", "Finding", "GuardMode", "find_secrets", "redact"]

GuardMode = Literal["refuse", "redact", "off"]


def _string_findings(text: str) -> list[Finding]:
    """The exact detectors, only for a string the fast scan flags by itself."""
    if len(text) < SHORTEST or not fast_search(text.encode("utf-8", "surrogatepass")):
        return []
    return find_secrets(text)


def _findings(value: Any, path: str) -> Iterator[tuple[str, Finding]]:
    """Every suspected secret inside ``value``, with the path of its string."""
    if isinstance(value, str):
        yield from ((path, f) for f in _string_findings(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                yield from ((f"{path} key {k!r}", f) for f in _string_findings(k))
                if isinstance(v, str) and (hit := field_finding(k, v)):
                    yield f"{path}[{k!r}]", hit
                    continue
            yield from _findings(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            yield from _findings(v, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _findings(getattr(value, f.name), f"{path}.{f.name}")
    elif hasattr(value, "model_dump"):
        yield from _findings(value.model_dump(), path)


def _mask(text: str) -> str:
    out: list[str] = []
    last = 0
    for f in find_secrets(text):
        out += [text[last : f.start], f"[REDACTED:{f.kind}]"]
        last = f.end
    return "".join(out) + text[last:]


def redact(value: Any) -> Any:
    """A copy of ``value`` with every suspected secret masked."""
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, dict):
        return {
            _mask(k) if isinstance(k, str) else k: (
                "[REDACTED:secret_field]" if isinstance(k, str) and isinstance(v, str) and field_finding(k, v)
                else redact(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(redact(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: redact(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init})
    if hasattr(value, "model_copy") and hasattr(value, "model_dump"):
        return type(value).model_validate(redact(value.model_dump()))
    return value


def _a(kind: str) -> str:
    """``aws_access_key`` -> "an aws access key" (the error reads as a sentence)."""
    words = kind.replace("_", " ")
    return ("an " if words[0] in "aeiou" else "a ") + words


class SecretGuard:
    """Checks values for credentials before they are stored; see the module docstring."""

    def __init__(self, mode: GuardMode = "refuse") -> None:
        if mode not in ("refuse", "redact", "off"):
            raise ConfigurationError(f"secret_guard={mode!r} is not valid; use 'refuse', 'redact' or 'off'")
        self.mode = mode

    def suspicious(self, data: bytes) -> bool:
        """One linear-time pass over the serialised record: could anything be a secret?"""
        return self.mode != "off" and len(data) >= SHORTEST and bool(fast_search(data))

    def check(self, value: Any, path: str) -> Any:
        """``value`` itself when clean; its redacted copy in redact mode; raises in refuse mode."""
        hits = list(_findings(value, path))
        if not hits:  # e.g. the match was base64 of a bytes value, not a str of the user's
            return value
        if self.mode == "refuse":
            where, finding = hits[0]
            raise SecretDetectedError(
                f"refusing to store {where}: it contains what looks like {_a(finding.kind)}; "
                "remove the credential, or open the store with secret_guard='redact' to store it masked",
                where,
                finding.kind,
            )
        return redact(value)
