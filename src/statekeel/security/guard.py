"""The secret guard: credentials are caught before anything is persisted.

Agent state is a favourite place for leaked credentials (a tool's output, a
pasted ``.env``). Every value is checked after it is serialised and before it
is compressed, encrypted or written. Modes:

* ``refuse`` (default) — raise :class:`~statekeel.errors.SecretDetectedError`
  naming the path of the offending string and the kind of secret; nothing is
  written;
* ``redact`` — replace each secret with ``[REDACTED:<kind>]`` and store the rest;
* ``off`` — no check.

What is detected: cloud provider keys (AWS, Google), ``sk-…`` style API keys
(OpenAI, Anthropic, Stripe), GitHub/GitLab/Slack tokens, private key blocks,
JWTs, connection strings with a password, ``password=…``-style assignments,
and high-entropy tokens (≥ 32 characters mixing upper case, lower case and
digits with ≥ 4.2 bits of entropy per character). The fast path is one regex
search over the serialised record; only on a hit are strings walked to name
the path. Recall and false-positive rate are measured by
``benchmarks/bench_secret_guard.py``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigurationError, SecretDetectedError

__all__ = ["SecretGuard", "Finding", "GuardMode", "find_secrets", "redact"]

GuardMode = Literal["refuse", "redact", "off"]

_PATTERNS: dict[str, str] = {
    "aws_access_key": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "api_key": r"\bsk-(?:proj-|ant-[a-z0-9]{2,8}-|live-|test-)?[A-Za-z0-9_\-]{20,}",
    "stripe_key": r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
    "gitlab_token": r"\bglpat-[A-Za-z0-9_\-]{20,}",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "private_key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    "connection_string": r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^\s:/@\"\\]{1,64}:[^\s@/\"\\]{3,}@[^\s\"\\]+",
    "password_assignment": (
        r"(?i:(?:\b|_)(?:password|passwd|pwd|secret|api[_\-]?key|access[_\-]?token|auth[_\-]?token"
        r"|client[_\-]?secret|private[_\-]?key)\b(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?[^\s\"'\\,;}{]{8,})"
    ),
    "high_entropy_token": r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{32,}={0,2}(?![A-Za-z0-9+/_\-])",
}
_ANY = re.compile("|".join(f"(?P<{k}>{v})" for k, v in _PATTERNS.items()))
_ENTROPY_BITS = 4.2
# The fast path: one RE2 automaton (linear time) over a superset of the
# detectors — every detector's match contains one of these pieces. Only when it
# fires are strings walked and the exact detectors (Python's re) applied.
# No counted repetitions here: they multiply RE2's DFA states, and on text it
# has not seen before the scan then costs ~60 µs per KB instead of ~3 µs.
_FAST_PATTERN = (
    r"AKIA|ASIA|ABIA|ACCA|AIza|sk-|sk_|rk_|pk_|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|-----BEGIN|://"
    r"|eyJ[A-Za-z0-9_\-]+\."
    r"|(?i:passw|secret|token|api.?key|private.?key)|(?i:pwd)[^A-Za-z]"
    # random tokens mix upper case and digits; floats, hex ids and UUIDs have no upper case
    r"|[A-Z][A-Za-z0-9+/_\-]*[0-9]|[0-9][A-Za-z0-9+/_\-]*[A-Z]"
)
_SHORTEST = 16  # no detector matches fewer bytes


def _fast_search() -> Any:
    """``search(data) -> bool``: RE2's automaton called directly (its Python wrapper
    costs more than the scan), or Python's re where google-re2 is missing."""
    try:
        import re2  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - google-re2 is a dependency
        pattern = re.compile(_FAST_PATTERN.encode())
        return lambda data: pattern.search(data) is not None
    automaton = re2.compile(_FAST_PATTERN.encode())._regexp
    unanchored = re2._re2.RE2.Anchor.UNANCHORED
    return lambda data: automaton.Match(unanchored, data, 0, len(data))[0][0] != -1


_FAST_SEARCH = _fast_search()


@dataclass(frozen=True, slots=True)
class Finding:
    """One suspected secret inside a string."""

    kind: str
    """Which detector matched, e.g. ``aws_access_key``."""
    start: int
    """Offset of the match in the string."""
    end: int
    """Offset just past the match."""


def _entropy(token: str) -> float:
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


def _looks_random(token: str) -> bool:
    classes = sum(
        (any(c.isupper() for c in token), any(c.islower() for c in token), sum(c.isdigit() for c in token) >= 2)
    )
    return classes == 3 and _entropy(token) >= _ENTROPY_BITS


def find_secrets(text: str) -> list[Finding]:
    """Every suspected secret in ``text``."""
    found: list[Finding] = []
    for m in _ANY.finditer(text):
        kind = m.lastgroup or "secret"
        if kind == "high_entropy_token" and not _looks_random(m.group().rstrip("=")):
            continue
        found.append(Finding(kind, m.start(), m.end()))
    return found


_SECRET_FIELD = re.compile(
    r"(?i)^(?:[a-z0-9]+[_\-])?(?:password|passwd|pwd|secret|api[_\-]?key|access[_\-]?token|auth[_\-]?token"
    r"|client[_\-]?secret|private[_\-]?key|secret[_\-]?key|token)$"
)


def _field_finding(key: str, value: str) -> Finding | None:
    """A dict entry such as {"password": "hunter2!!"}: the key names a secret."""
    if _SECRET_FIELD.match(key) and len(value) >= 8 and " " not in value.strip():
        return Finding("secret_field", 0, len(value))
    return None


def _string_findings(text: str) -> list[Finding]:
    """The exact detectors, only for a string the fast scan flags by itself."""
    if len(text) < _SHORTEST or not _FAST_SEARCH(text.encode("utf-8", "surrogatepass")):
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
                if isinstance(v, str) and (hit := _field_finding(k, v)):
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
                "[REDACTED:secret_field]" if isinstance(k, str) and isinstance(v, str) and _field_finding(k, v)
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


class SecretGuard:
    """Checks values for credentials before they are stored; see the module docstring."""

    def __init__(self, mode: GuardMode = "refuse") -> None:
        if mode not in ("refuse", "redact", "off"):
            raise ConfigurationError(f"secret_guard={mode!r} is not valid; use 'refuse', 'redact' or 'off'")
        self.mode = mode

    def suspicious(self, data: bytes) -> bool:
        """One linear-time pass over the serialised record: could anything be a secret?"""
        return self.mode != "off" and len(data) >= _SHORTEST and _FAST_SEARCH(data)

    def check(self, value: Any, path: str) -> Any:
        """``value`` itself when clean; its redacted copy in redact mode; raises in refuse mode."""
        hits = list(_findings(value, path))
        if not hits:  # e.g. the match was base64 of a bytes value, not a str of the user's
            return value
        if self.mode == "refuse":
            where, finding = hits[0]
            raise SecretDetectedError(
                f"refusing to store {where}: it contains what looks like a {finding.kind.replace('_', ' ')}; "
                "remove the credential, or open the store with secret_guard='redact' to store it masked",
                where,
                finding.kind,
            )
        return redact(value)
