"""Values as JSON for the browser: anything a store holds becomes plain JSON types.

Stored values may be datetimes, bytes, sets, dataclasses or pydantic models; the
inspector shows them, it never needs to round-trip them, so their text form is enough.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from typing import Any

__all__ = ["dumps", "iso"]


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=repr) if not isinstance(value, tuple) else list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)  # UUID, Decimal, Enum: their text form


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (non-JSON values in their text form)."""
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def iso(when: dt.datetime | None) -> str | None:
    """ISO-8601 text of an aware datetime, None stays None."""
    return None if when is None else when.isoformat()
