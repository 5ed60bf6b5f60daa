"""Checks of API arguments, one rule per kind of argument, shared by every feature.

Bad input must fail with :class:`~statekeel.errors.InvalidInputError` *before*
anything is written, and the same kind of argument must follow the same rule
everywhere. The rules:

* **names** — ids (sessions, users, runs, streams), state keys, note authors,
  step / consumer / projection names, event types, checkpoint labels, cursors:
  a non-empty ``str`` of at most :data:`MAX_NAME_CHARS` (1,024) characters with
  no lone surrogate (``'\\ud800'`` cannot be stored as UTF-8 by any backend).
  ``'..'``, ``'/'``, NUL and emoji are fine: keys escape them.
* **integers** — versions (``expect=``), seqs, counts and limits: an ``int``
  (``True`` is refused), at most :data:`MAX_INT` (2**63 - 1, what every
  backend stores), and at least the minimum each parameter documents.
* **durations** — ttl, stale_after, max_age, newer_than…: seconds (int or
  float), a ``timedelta`` or text like ``'90s'``, ``'5m'``, ``'2h'``, ``'7d'``;
  finite, positive and at most :data:`MAX_DURATION` (100 years).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Final

from ..errors import InvalidInputError
from ..protocol import ANY, Expect

__all__ = [
    "MAX_DURATION",
    "MAX_INT",
    "MAX_NAME_CHARS",
    "Duration",
    "check_expect",
    "check_int",
    "check_limit",
    "check_name",
    "check_optional_name",
    "check_text",
    "maybe_seconds",
    "seconds",
    "short_repr",
    "stored_seconds",
]

MAX_NAME_CHARS: Final = 1024
"""Longest id, key, name, event type or label, in characters."""
MAX_INT: Final = 2**63 - 1
"""Largest version, seq or limit: the signed 64-bit integer every backend stores."""
MAX_DURATION: Final = 100 * 365.25 * 86400.0
"""Longest duration, in seconds (100 years): beyond it, expiry times overflow datetimes."""

Duration = float | int | str | dt.timedelta
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


# -- names ---------------------------------------------------------------------------
def check_name(value: Any, what: str) -> str:
    """``value`` if it is a storable name (see the module docstring), else InvalidInputError."""
    if type(value) is not str:
        raise InvalidInputError(
            f"{what} must be a str, got {type(value).__name__} {_short(value)}; convert it with str() first"
        )
    if not value:
        raise InvalidInputError(f"{what} must not be an empty string")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidInputError(
            f"{what} is {len(value):,} characters long; the limit is {MAX_NAME_CHARS:,}: "
            "use a shorter id (e.g. a hash of the long one)"
        )
    _refuse_surrogates(value, what)
    return value


def check_text(value: Any, what: str) -> str:
    """``value`` if it is a str (of any length) with no lone surrogate, else InvalidInputError: a search
    query, say, which no backend stores but which must not silently match nothing."""
    if type(value) is not str:
        raise InvalidInputError(f"{what} must be a str, got {type(value).__name__} {_short(value)}")
    _refuse_surrogates(value, what)
    return value


def _refuse_surrogates(value: str, what: str) -> None:
    if not value.isascii() and (bad := _SURROGATE.search(value)):
        raise InvalidInputError(
            f"{what} {_short(value)} holds a lone surrogate {bad.group()!r} at index {bad.start()}, "
            "which cannot be stored as UTF-8; decode the text properly (errors='replace')"
        )


def check_optional_name(value: Any, what: str) -> str | None:
    """None, or a name as :func:`check_name` accepts it."""
    return None if value is None else check_name(value, what)


def short_repr(value: Any) -> str:
    """``repr(value)``, shortened, for error messages; never raises (an int of 5,000 digits has no repr)."""
    try:
        text = repr(value)
    except Exception:  # ValueError: over the int/str conversion limit
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else f"{text[:40]}…({len(text):,} chars)"


_short = short_repr


# -- integers ------------------------------------------------------------------------
def check_int(value: Any, what: str, *, minimum: int = 0) -> int:
    """``value`` if it is an int in ``[minimum, MAX_INT]`` (bool refused), else InvalidInputError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{what} must be an int >= {minimum}, got {type(value).__name__} {_short(value)}")
    if not minimum <= value <= MAX_INT:
        raise InvalidInputError(f"{what} must be an int from {minimum} to 2**63 - 1, got {_short(value)}")
    return int(value)


def check_limit(value: Any, what: str = "limit") -> int:
    """A page size: an int >= 1 (a listing never returns an empty page on purpose)."""
    return check_int(value, what, minimum=1)


def check_expect(value: Any) -> Expect:
    """``expect=``: ANY (no check), None (create-only) or a version (int >= 0; 0 matches nothing)."""
    if value is ANY or value is None:
        return value
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise InvalidInputError(
            f"expect must be a version (an int >= 0, as returned in item.version), None (only if "
            f"absent) or left out, got {type(value).__name__} {_short(value)}"
        )
    return value


# -- durations -----------------------------------------------------------------------
def seconds(value: Duration, what: str = "duration") -> float:
    """``value`` in seconds: finite, positive, at most 100 years; else InvalidInputError."""
    if isinstance(value, dt.timedelta):
        secs = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = _float(value, what)
    elif isinstance(value, str) and (m := _PATTERN.match(value)):
        secs = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InvalidInputError(
            f"{what} {_short(value)} is not a duration; give seconds, a timedelta, or text like "
            "'30s', '5m', '2h', '7d'"
        )
    if not math.isfinite(secs) or secs <= 0 or secs > MAX_DURATION:
        raise InvalidInputError(
            f"{what} must be a finite duration above 0 and at most 100 years, got {_short(value)}"
        )
    return secs


def maybe_seconds(value: Duration | None, what: str = "duration") -> float | None:
    """None (no limit / never), or :func:`seconds`."""
    return None if value is None else seconds(value, what)


def _float(value: int | float, what: str) -> float:
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        raise InvalidInputError(f"{what} must be at most 100 years, got {_short(value)}") from None


def stored_seconds(value: Any) -> float | None:
    """A duration read back from the store, or None when it is not one (written by an old version).

    Old versions accepted NaN, infinities and 1e300 as ttl; reading such a value
    must not break listings, so it reads as "never expires".
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= MAX_DURATION:
        return float(value)  # NaN fails the comparison
    return None
