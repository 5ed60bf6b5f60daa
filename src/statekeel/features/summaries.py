"""Summaries of older history: what the working set shows for messages that no longer fit.

    s.summarize(upto=500, fn=summarise_with_my_model)   # the messages not yet summarised, up to #500
    s.context(budget=4000)                              # older messages appear as their summaries

A summary is one record in the session's partition, ``session/<id>/summary/<~upto>``
(:mod:`statekeel.core.layout`): ``{"from", "upto", "text", "count", "by"}`` — the seq range
it covers, the summariser's text, how many visible messages it read and the summariser's
name. The key mirrors the end seq, so a forward scan meets the newest summary first:
:func:`statekeel.features.context` reads summaries newest first and stops when its budget is
spent, never reading the history they cover. One summary per end seq: summarising the same
range again replaces it. The history itself is kept (``s.trim`` reclaims it; its summaries
stay); the summary expires, is encrypted and is erased with its session.

The summariser is any callable ``fn(messages) -> str`` taking the appended values oldest
first (a model call in production, something deterministic in tests). It runs before
anything is written: if it raises, nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from ..core import Core, SessionCore, layout
from ..core.validate import check_int
from ..errors import InvalidInputError
from ..models import to_datetime
from ..protocol import ANY, Entry, Put, Record
from .history_view import visible_entries

__all__ = ["Summarizer", "Summary", "iter_summaries", "summarize"]

Summarizer = Callable[[list[Any]], str]
"""``fn(messages) -> str``: the appended values of a range of history, oldest first."""

_PAGE: Final = 16


@dataclass(frozen=True, slots=True)
class Summary:
    """A stored summary of a range of a session's history."""

    start: int
    """The first history seq it covers."""
    upto: int
    """The last history seq it covers."""
    text: str
    """What the summariser wrote."""
    count: int
    """How many (visible) messages of the range it was given."""
    by: str | None
    """The summariser's qualified name, when it has one."""
    created_at: dt.datetime
    """When it was stored (UTC)."""

    def covers(self, seq: int) -> bool:
        """Whether history seq ``seq`` lies in the summarised range."""
        return self.start <= seq <= self.upto


def _from_record(core: Core, rec: Record) -> Summary:
    body = core.codec.decode(rec.data, rec.codec, rec.key)
    created = to_datetime(rec.updated_at)
    assert created is not None
    return Summary(int(body["from"]), int(body["upto"]), str(body["text"]), int(body["count"]), body.get("by"),
                   created)


def iter_summaries(core: Core, session_id: str) -> Iterator[Summary]:
    """The session's summaries, newest end seq first, read a page at a time as iterated."""
    prefix = layout.summaries_prefix(session_id)
    after: str | None = None
    while recs := core.backend.scan(prefix, after=after, limit=_PAGE):
        yield from (_from_record(core, r) for r in recs)
        if len(recs) < _PAGE:
            return
        after = recs[-1].key


def summarize(session: SessionCore, fn: Summarizer, upto: int | None, start: int | None) -> Summary:
    """Summarise the visible history ``start..upto`` with ``fn`` and store it (see the module doc).

    ``upto`` defaults to the newest message; ``start`` to the seq after the newest summary's
    end (or the oldest message kept), so successive calls summarise successive ranges."""
    _check_summarizer(fn)
    first, last = _bounds(session)
    upto = last if upto is None else check_int(upto, "upto", minimum=1)
    if upto > last:
        raise InvalidInputError(f"upto={upto} is past the newest message (#{last}); use upto={last} or leave it out")
    start = _default_start(session, first) if start is None else check_int(start, "start", minimum=1)
    if start > upto:
        raise InvalidInputError(
            f"messages up to #{upto} are already summarised (through #{start - 1}); pass a later upto= once "
            "more is appended, or start= to summarise a range again"
        )
    entries = _visible(session, start, upto + 1)
    if not entries:
        raise InvalidInputError(f"no visible message between #{start} and #{upto} to summarise")
    text = fn(session.core.codec.decode_many([(e.data, e.codec) for e in entries], layout.history_log(session.id)))
    if not isinstance(text, str):
        raise InvalidInputError(
            f"the summariser must return a str, {_name(fn) or repr(fn)} returned {type(text).__name__}"
        )
    return _store(session, {"from": start, "upto": upto, "text": text, "count": len(entries), "by": _name(fn)})


def _check_summarizer(fn: Any) -> None:
    if not callable(fn):
        raise InvalidInputError(f"fn= must be a function messages -> str, got {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):
        raise InvalidInputError(
            f"{_name(fn) or repr(fn)} is an async function; summarize() calls fn on its own thread, so pass a plain "
            "function (in async code, run your model call in it with asyncio.run_coroutine_threadsafe)"
        )


def _bounds(session: SessionCore) -> tuple[int, int]:
    info = session.backend.log_info(layout.history_log(session.id))
    if info is None or info.last_seq < info.first_seq:
        raise InvalidInputError(f"session {session.id!r} has no history to summarise; append messages first")
    return info.first_seq, info.last_seq


def _default_start(session: SessionCore, first: int) -> int:
    newest = next(iter_summaries(session.core, session.id), None)
    return first if newest is None else max(first, newest.upto + 1)


def _visible(session: SessionCore, start: int, stop: int) -> list[Entry]:
    log = layout.history_log(session.id)
    view = session.backend.get(layout.session_view_key(session.id))
    if view is None:
        return session.backend.read(log, start=start, stop=stop)
    return visible_entries(session.core, view, log, start, stop, None)


def _store(session: SessionCore, body: dict[str, Any]) -> Summary:
    key = layout.summary_key(session.id, body["upto"])
    data, codec = session.core.codec.encode(body, f"session[{session.id!r}] summary of #{body['from']}-"
                                                  f"#{body['upto']}", key)
    rec = session.apply(lambda exp: [Put(key, data, codec, ANY, exp)])[0]
    assert isinstance(rec, Record)
    return _from_record(session.core, rec)


def _name(fn: Any) -> str | None:
    name = getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", None)
    return name if isinstance(name, str) else None
