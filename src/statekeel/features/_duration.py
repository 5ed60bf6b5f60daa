"""Durations given as seconds, timedelta, or text like ``"90s"``, ``"5m"``, ``"2h"``, ``"7d"``."""

from __future__ import annotations

import datetime as dt
import re

from ..errors import InvalidInputError

Duration = float | int | str | dt.timedelta
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def seconds(value: Duration, what: str = "duration") -> float:
    """``value`` in seconds; raises :class:`InvalidInputError` with the accepted forms."""
    if isinstance(value, dt.timedelta):
        secs = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = float(value)
    elif isinstance(value, str) and (m := _PATTERN.match(value)):
        secs = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InvalidInputError(
            f"{what} {value!r} is not a duration; give seconds, a timedelta, or text like "
            "'30s', '5m', '2h', '7d'"
        )
    if secs <= 0:
        raise InvalidInputError(f"{what} must be positive, got {value!r}")
    return secs


def maybe_seconds(value: Duration | None, what: str = "duration") -> float | None:
    return None if value is None else seconds(value, what)
