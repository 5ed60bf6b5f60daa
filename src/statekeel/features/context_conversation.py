"""The conversation part of the working set: recent messages, and summaries for the older ones.

Reads are bounded by what is kept, never by the length of the history: messages are read
newest first in pages (the first sized to what the budget may hold, at least 16; then doubling,
up to 256) only while they still fit, and summaries newest
first (:func:`statekeel.features.summaries.iter_summaries`) only as far as they are needed.

The rule (docs/working-set.md): messages form a contiguous run ending at the newest one, kept
newest first while they fit *together with the summary shown next to them* (the one covering
the message just before them, else the newest one before that); then that summary, then older
summaries newest first while they fit. A kept message that a kept summary also covers gives way
to an older summary that would not fit otherwise (oldest such message first), as long as the
messages keep at least as many tokens as the summaries: recent detail first, but no hole in
the older story while a covered copy of the recent one is shown twice. Messages older
than the run that no summary covers are reported dropped, with a hint to summarise them.
A summary may overlap the oldest messages shown (it was written for a range, not for this
budget): a summary over-covering a little is preferred to older messages missing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..core import Core, layout
from ..models import Message, to_datetime
from ..protocol import Entry, LogInfo, Record
from .context_render import ContextItem, Dropped, TokenCounter, as_text, bullet, heading, message_role
from .history_view import visible_entries
from .summaries import Summary, iter_summaries

__all__ = ["Budget", "History", "Summaries", "fill_conversation", "message_text", "offer_latest", "summary_text"]

_FIRST_PAGE: Final = 16
_MAX_PAGE: Final = 256
_ORDER: Final = ("standing_orders", "profile", "decisions", "runs", "memories", "summaries", "messages")


@dataclass
class Budget:
    """Tokens left, and what was kept and dropped so far (sections pay their heading once)."""

    count: TokenCounter
    left: int
    kept: list[tuple[tuple[int, int], ContextItem]] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    opened: set[str] = field(default_factory=set)

    def cost(self, section: str, text: str) -> int:
        """What adding ``text`` to ``section`` costs now (its heading too, if it is the first)."""
        return self.count(bullet(text)) + (0 if section in self.opened else self.count(heading(section)))

    def offer(self, section: str, name: str, text: str, value: Any = None, *, order: int | None = None,
              reserve: int = 0) -> bool:  # fmt: skip
        """Keep the item if it fits (leaving ``reserve`` tokens), else report it dropped."""
        cost = self.cost(section, text)
        if cost + reserve > self.left:
            self.drop(section, name, cost, _no_room(cost, self.left - reserve))
            return False
        self.left -= cost
        self.opened.add(section)
        where = (_ORDER.index(section), len(self.kept) if order is None else order)
        self.kept.append((where, ContextItem(section, name, text, cost, value)))
        return True

    def evict(self, section: str, name: str, reason: str) -> None:
        """Take back a kept item (its tokens are free again) and report it dropped."""
        n = next(n for n, (_, item) in enumerate(self.kept) if item.section == section and item.name == name)
        item = self.kept.pop(n)[1]
        self.left += item.tokens
        self.drop(section, name, item.tokens, reason)

    def drop(self, section: str, item: str, tokens: int | None, reason: str) -> None:
        self.dropped.append(Dropped(section, item, tokens, reason))

    def items(self) -> tuple[ContextItem, ...]:
        """The kept items in document order."""
        return tuple(item for _, item in sorted(self.kept, key=lambda kept: kept[0]))


def _no_room(cost: int, left: int) -> str:
    return f"needs {cost} tokens, {max(left, 0)} left"


def message_text(message: Message) -> str:
    """``**role** (#seq): content`` — other fields of a chat message (tool calls) as JSON after it."""
    value = message.value
    if isinstance(value, Mapping) and (role := message_role(value)) is not None:
        rest = {k: v for k, v in value.items() if k not in ("role", "content")}
        content = value.get("content")
        text = " ".join(t for t in (None if content is None else as_text(content), rest and as_text(rest)) if t)
        return f"**{role}** (#{message.seq}): {text}"
    return f"**message** (#{message.seq}): {as_text(value)}"


def summary_text(summary: Summary) -> str:
    return f"messages #{summary.start}-#{summary.upto} ({summary.count}): {summary.text}"


class History:
    """The visible history, newest first, read a page at a time as iterated."""

    def __init__(self, core: Core, session_id: str, first_page: int = _FIRST_PAGE, view: Record | None = None
                 ) -> None:  # fmt: skip
        self._core = core
        self._log = layout.history_log(session_id)
        self._view = view
        """The session's view record (hidden ranges), read by the caller in its first batch of reads."""
        self.hidden: list[Sequence[int]] = [] if view is None else core.codec.decode(view.data, view.codec,
                                                                                         view.key)["hidden"]
        self._info: list[LogInfo | None] = []
        self.oldest_read = sys.maxsize
        """The oldest seq read so far (everything from it to the newest has been read)."""
        self._exhausted = False
        self._read: list[Message] = []
        self._page = min(max(first_page, _FIRST_PAGE), _MAX_PAGE)
        """Entries the next read asks for: a guess of what the budget holds, doubling per read."""

    @property
    def first(self) -> int:
        """The oldest stored seq (``log_info``, read only when a gap is reported)."""
        info = self._log_info()
        return 1 if info is None else info.first_seq

    @property
    def last(self) -> int:
        """The newest seq: the newest message read, else from ``log_info``."""
        if self._read:
            return self._read[0].seq if self._view is None else max(self._read[0].seq, self._last_info())
        return self._last_info()

    def _last_info(self) -> int:
        info = self._log_info()
        return 0 if info is None else info.last_seq

    def _log_info(self) -> LogInfo | None:
        if not self._info:
            self._info.append(self._core.backend.log_info(self._log))
        return self._info[0]

    def __iter__(self) -> Iterator[Message]:
        """Messages newest first; pages are read only when iteration reaches them."""
        n = 0
        while True:
            if n == len(self._read) and (self._exhausted or not self._more()):
                return
            yield self._read[n]
            n += 1

    def _more(self) -> bool:
        """Read the next page older than what was read; a short page is the oldest (no ``log_info``)."""
        stop = None if self.oldest_read == sys.maxsize else self.oldest_read
        page = self._page
        self._page = min(page * 2, _MAX_PAGE)
        entries: list[Entry]
        if self._view is None:
            entries = self._core.backend.read(self._log, stop=stop, limit=page, reverse=True)
        else:
            entries = visible_entries(self._core, self._view, self._log, 1, stop, page)
        self._exhausted = len(entries) < page
        if not entries:
            return False
        values = self._core.codec.decode_many([(e.data, e.codec) for e in entries], self._log)
        stamps = [to_datetime(e.created_at) for e in entries]
        fresh = [Message(e.seq, v, t) for e, v, t in zip(entries, values, stamps)]  # type: ignore[arg-type]
        self._read.extend(reversed(fresh))
        self.oldest_read = entries[0].seq
        return True

    def read_between(self, lo: int, hi: int) -> list[Message] | None:
        """The messages read with ``lo <= seq <= hi``, or None if part of that range was not read."""
        if lo < self.oldest_read and not self._exhausted:
            return None
        return [m for m in self._read if lo <= m.seq <= hi]

    def is_hidden(self, start: int, upto: int) -> bool:
        """Whether any seq of ``start..upto`` was hidden by a restore (or a pop)."""
        return any(lo <= upto and start <= hi for lo, hi in self.hidden)


class Summaries:
    """The session's summaries newest first, loaded as far as lookups need them."""

    def __init__(self, core: Core, session_id: str, history: History) -> None:
        self._source = iter_summaries(core, session_id)
        self._loaded: list[Summary] = []
        self._done = False
        self._history = history

    def _at(self, n: int) -> Summary | None:
        while n >= len(self._loaded) and not self._done:
            found = next(self._source, None)
            if found is None:
                self._done = True
            else:
                self._loaded.append(found)
        return self._loaded[n] if n < len(self._loaded) else None

    def covering(self, seq: int) -> Summary | None:
        """The newest summary whose range holds ``seq`` (and no message a restore hid)."""
        n = 0
        while (s := self._at(n)) is not None and s.upto >= seq:
            if s.start <= seq and not self._history.is_hidden(s.start, s.upto):
                return s
            n += 1
        return None

    def next_older(self, seq: int) -> Summary | None:
        """The summary shown first for what precedes message ``seq``: the one covering ``seq - 1``,
        else (a gap no summary covers) the newest ending before it."""
        return self.covering(seq - 1) or next(self.before(seq), None)

    def before(self, seq: int) -> Iterator[Summary]:
        """Summaries ending before ``seq``, newest first, each ending before the previous one starts."""
        n, bound = 0, seq
        while (s := self._at(n)) is not None:
            n += 1
            if s.upto < bound and not self._history.is_hidden(s.start, s.upto):
                yield s
                bound = s.start


def offer_latest(budget: Budget, history: History) -> bool:
    """Keep the newest message (second only to the standing orders); False if it does not fit."""
    latest = next(iter(history), None)
    if latest is None:
        return False
    return budget.offer("messages", f"#{latest.seq}", message_text(latest), latest.value, order=latest.seq)


def fill_conversation(budget: Budget, history: History, summaries: Summaries, recent: int | None,
                      latest_kept: bool) -> None:  # fmt: skip
    """Keep messages newest first with the summary covering what precedes them (module doc)."""
    oldest: int | None = None
    shown: list[int] = []  # seqs kept, newest first
    for message in history:
        if not shown and not latest_kept:  # the newest did not fit: the run of messages is empty
            break
        if shown and recent is not None and len(shown) >= recent:
            break
        if shown and not _keep(budget, history, summaries, message):
            break
        oldest = message.seq
        shown.append(message.seq)
    _older(budget, history, summaries, history.last + 1 if oldest is None else oldest, recent, shown)


def _keep(budget: Budget, history: History, summaries: Summaries, message: Message) -> bool:
    cover = summaries.next_older(message.seq) if message.seq > 1 else None  # trimmed seqs may have summaries
    reserve = 0 if cover is None else budget.cost("summaries", summary_text(cover))
    text = message_text(message)
    if budget.cost("messages", text) + reserve > budget.left:
        return False
    return budget.offer("messages", f"#{message.seq}", text, message.value, order=message.seq)


def _older(budget: Budget, history: History, summaries: Summaries, oldest: int, recent: int | None,
           shown: list[int]) -> None:  # fmt: skip
    """What precedes the messages kept: the covering summary, older summaries, or a reported gap."""
    before = oldest - 1
    if before < 1:
        return
    cover = summaries.covering(before)
    if cover is None:
        if before >= history.first:  # messages still stored that nothing shows
            _report_gap(budget, history, summaries, before, recent, len(shown))
        chain = summaries.before(oldest)
    else:
        chain = _chain_from(cover, summaries)
    # kept messages a kept summary also covers (never the newest) may give way to older summaries
    redundant = [] if cover is None else sorted(q for q in shown[1:] if q <= cover.upto)
    for s in chain:
        _make_room(budget, redundant, budget.cost("summaries", summary_text(s)), s)
        if not budget.offer("summaries", f"#{s.start}-#{s.upto}", summary_text(s), s, order=s.start):
            if next(chain, None) is not None:
                budget.drop("summaries", f"summaries ending before #{s.start}", None,
                            "the budget was spent; older summaries were not read")
            return


def _make_room(budget: Budget, redundant: list[int], cost: int, summary: Summary) -> None:
    """Drop the oldest messages a shown summary already covers, if that lets ``summary`` fit and
    the recent messages keep at least as many tokens as the summaries."""
    if cost <= budget.left or not redundant:
        return
    tokens = {item.name: item.tokens for _, item in budget.kept if item.section == "messages"}
    raw = sum(tokens.values())
    summarised = cost + sum(item.tokens for _, item in budget.kept if item.section == "summaries")
    left, evict = budget.left, 0
    while left < cost and evict < len(redundant):
        left, raw, evict = left + tokens[f"#{redundant[evict]}"], raw - tokens[f"#{redundant[evict]}"], evict + 1
    if left < cost or raw < summarised:
        return
    for seq in redundant[:evict]:
        budget.evict("messages", f"#{seq}",
                     f"a shown summary covers it; made room for the older summary #{summary.start}-#{summary.upto}")
    del redundant[:evict]


def _chain_from(first: Summary, summaries: Summaries) -> Iterator[Summary]:
    yield first
    yield from summaries.before(first.start)


def _report_gap(budget: Budget, history: History, summaries: Summaries, before: int, recent: int | None,
                shown: int) -> None:  # fmt: skip
    newest = next(summaries.before(before + 1), None)
    lo = history.first if newest is None else max(history.first, newest.upto + 1)
    read = history.read_between(lo, before)
    tokens = None if read is None else sum(budget.count(bullet(message_text(m))) for m in read)
    why = f"beyond recent={recent}" if recent is not None and shown >= recent else "they do not fit"
    budget.drop("messages", f"#{lo}-#{before}", tokens,
                f"{why} and no summary covers them; s.summarize(upto={before}, fn=...) keeps them as a summary")
