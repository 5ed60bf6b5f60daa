"""What to use instead: the async twin of a sync call, for the loop guard's message."""

from __future__ import annotations

__all__ = ["twin_of", "TWIN_NAMES"]

TWIN_NAMES: dict[str, str] = {
    "Store": "store",
    "Session": "session",
    "StateView": "state",
    "SessionState": "session.state",
    "SessionNotes": "session.notes",
    "Run": "run",
    "EventStream": "stream",
    "Consumer": "consumer",
}
"""Sync class -> how the docs name its async twin (``await <name>.<method>(...)``)."""

_SPECIAL: dict[str, str] = {
    "open": "store = await statekeel.open_async(url)",
    "statekeel.open": "store = await statekeel.open_async(url)",
    "Store.scope": "store.scope(...) (no await; await its methods)",
    "Store.run": "async with store.run(run_id) as run:",
    "Run.__init__": "async with store.run(run_id) as run:",
    "Run.__enter__": "async with store.run(run_id) as run:",
    "Run.__exit__": "async with store.run(run_id) as run:",
    "Run.stepfn": "@run.stepfn on an async def, then await it",
    "DecisionContext.__enter__": "async with session.decide(...) as d:",
    "DecisionContext.__exit__": "async with session.decide(...) as d:",
    "DecisionContext.outcome": "await d.outcome(value)",
    "EventStream.__len__": "await stream.count()",
    "EventStream.last_seq": "await stream.last_seq()",
    "EventStream.iter": "async for event in stream.iter(...)",
    "Consumer.position": "await consumer.position()",
    "Consumer.lag": "await consumer.lag()",
    "Session.__len__": "await session.count()",
    "Session.batch": "async with session.batch() as b:",
    "SessionBatch.__exit__": "async with session.batch() as b:",
    "StateView.keys": "async for key in state.keys()",
    "StateView.__getitem__": "await state.require(key)",
    "StateView.__contains__": "await state.contains(key)",
    "StateView.__setitem__": "await state.put(key, value)",
    "StateView.__delitem__": "await state.delete(key)",
}


def twin_of(qualname: str | None) -> str | None:
    """``'Session.append'`` -> ``'await session.append(...)'``; None if unknown."""
    if not qualname:
        return None
    if qualname in _SPECIAL:
        return _SPECIAL[qualname]
    owner, _, method = qualname.rpartition(".")
    if owner == "SessionState" and f"StateView.{method}" in _SPECIAL:
        return _SPECIAL[f"StateView.{method}"].replace("state.", "session.state.")
    if owner in TWIN_NAMES and not method.startswith("_"):
        return f"await {TWIN_NAMES[owner]}.{method}(...)"
    if method in ("__enter__", "__exit__"):
        return f"async with store.context(lambda st: ...)  # {owner}"
    if owner:
        return f"await store.call(lambda st: ...)  # runs {qualname}() off the loop"
    return None
