"""Checks of what ADK hands the session service, before anything is written.

ADK's models are pydantic, but ``model_copy(update=...)`` and ``model_construct`` skip their
validation, and ADK's state helpers let a lone surrogate through to the JSON encoder: what these
functions refuse would otherwise be a raw pydantic or Unicode error, half a new session, or an
event stored that no later ``get_session`` can read back.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from google.adk.events.event import Event
from google.adk.sessions import _session_util
from pydantic_core import PydanticSerializationError

from ...core.validate import check_name
from ...errors import InvalidInputError, SerializationError
from ...store import Store

__all__ = ["check_timestamp", "event_record", "state_deltas", "storable"]

_EARLIEST, _LATEST = -62135596800.0, 253402300799.0
"""Epoch seconds of 0001-01-01 and 9999-12-31T23:59:59 UTC: what a datetime can hold."""


def state_deltas(state: Any) -> dict[str, dict[str, Any]]:
    """ADK's JSON-safe ``{"app", "user", "session"}`` deltas of a ``state`` dict (None: empty)."""
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise InvalidInputError(f"state must be a dict, got {type(state).__name__}")
    for key in state:
        if type(key) is not str:
            raise InvalidInputError(f"state keys must be str, got {type(key).__name__}; convert them with str()")
        check_name(key, "a state key")
    try:
        return _session_util.extract_json_safe_state_delta(state)
    except (UnicodeError, ValueError) as exc:  # a lone surrogate: ADK's fallback cannot encode it either
        raise SerializationError(f"state cannot be stored: {exc}; decode text properly (errors='replace')",
                                 "state") from None


def storable(store: Store, deltas: dict[str, dict[str, Any]]) -> None:
    """Encode every delta value once, so that a value the codec refuses fails before a write."""
    for scope, values in deltas.items():
        for key, value in values.items():
            check_name(key, "a state key")
            store.codec.encode(value, f"{scope} state[{key!r}]")


def check_timestamp(timestamp: Any) -> float:
    """An event's ``timestamp``: finite epoch seconds a datetime can hold (bool refused)."""
    ok = isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool)
    if ok and isinstance(timestamp, int):
        ok = _EARLIEST <= timestamp <= _LATEST  # compared as int: 10**400 has no float
    if not ok or not (math.isfinite(timestamp) and _EARLIEST <= timestamp <= _LATEST):
        raise InvalidInputError(
            f"event.timestamp must be epoch seconds (a finite float, e.g. time.time()), got "
            f"{type(timestamp).__name__}; nothing was stored"
        )
    return float(timestamp)


def event_record(event: Event) -> tuple[dict[str, Any], str]:
    """The event as stored (its JSON) and its idempotency key (a hash of that JSON)."""
    try:
        data = event.model_dump(mode="json", exclude_none=True)
        text = event.model_dump_json(exclude_none=True)
    except (PydanticSerializationError, UnicodeError, ValueError) as exc:
        raise SerializationError(f"the event cannot be stored as JSON: {exc}; nothing was stored", "event") from None
    return data, "adk-event:" + hashlib.sha256(text.encode()).hexdigest()[:40]
