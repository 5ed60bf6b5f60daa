"""Event store: append-only typed events, projections with snapshots, consumer cursors.

Backend layout of stream ``S`` (one partition, ``events/S``)::

    events/S/log                         the events, seq from 1: {"t": type, "d": data, "a": agent, "v": version}
    events/S/snap/<name>/v<n>/<19 - seq> projection snapshots {"seq", "state"}; the key counts
                                         down so a forward scan finds the newest snapshot <= seq first
    events/S/consumer/<name>             a consumer's acknowledged position {"seq"}

Appends are log appends: they never conflict, an event is one entry (never
interleaved) and readers never see a gap. An event's time is its entry's
``created_at``; reading by time assumes the clocks of the appending hosts
agree (events are located by binary search on seq, then filtered exactly).

A projection folds events into a state with ``fn(state, event)``. With
``snapshot_every=N`` the states at every N-th seq are stored (the newest
``keep_snapshots`` of them), so the next rebuild starts from the newest
snapshot at or before its target and replays only what came after.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..core import Core, layout
from ..core.validate import check_int, check_limit, check_name, check_optional_name, short_repr
from ..errors import ConflictError, InvalidInputError
from ..protocol import ANY, Append, Delete, Entry, Op, Put, keys
from ..models import to_datetime
from . import upcasting

__all__ = ["Event", "EventStream", "Consumer", "Projection", "list_streams"]

S = TypeVar("S")
PAGE = 2000
_SNAP_TOP = 10**19 - 1  # snapshot keys hold _SNAP_TOP - seq, 19 digits


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a stream."""

    seq: int
    """Position in the stream, from 1, without gaps."""
    type: str
    """What happened, e.g. ``task_created``."""
    data: Any
    """The payload (upcast to the current schema version when upcasters are registered)."""
    agent: str | None
    """Who appended it, if given."""
    time: dt.datetime
    """When it was appended (UTC)."""
    stream: str
    """The stream it belongs to."""


@dataclass(frozen=True, slots=True)
class Projection(Generic[S]):
    """The result of folding a stream: the state and where it stands."""

    state: S
    """The folded state."""
    seq: int
    """The last event folded in (0: none)."""
    snapshot_seq: int
    """Where the fold started: the snapshot's seq, 0 when it replayed from the start."""
    replayed: int
    """How many events were folded by this call."""


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


def _micros(seconds: float) -> int:
    """Epoch seconds as whole microseconds, rounded exactly as :attr:`Event.time` is."""
    return (dt.datetime.fromtimestamp(seconds, dt.timezone.utc) - _EPOCH) // _MICROSECOND


def _when(when: dt.datetime | float | int, what: str) -> int:
    """A datetime or epoch seconds as whole microseconds since the epoch."""
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise InvalidInputError(f"{what} must be timezone-aware, e.g. datetime.now(timezone.utc)")
        return (when - _EPOCH) // _MICROSECOND
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        try:
            return _micros(float(when))
        except (OverflowError, ValueError, OSError):  # NaN, infinities, beyond the years 1-9999
            raise InvalidInputError(
                f"{what} must be finite epoch seconds a datetime can hold, got {short_repr(when)}"
            ) from None
    raise InvalidInputError(f"{what} must be a datetime or epoch seconds, got {short_repr(when)}")


_check_name = check_name  # event types, consumer and projection names: names like any other


class EventStream:
    """An append-only stream of typed events. Get it from ``store.events(name)``."""

    def __init__(self, store: Core, name: str) -> None:
        check_name(name, "a stream name")
        self._store = store
        self._backend = store.backend
        self.name = name
        self._log = layout.event_log(name)

    def __repr__(self) -> str:
        return f"<EventStream {self.name!r}>"

    # -- writing -------------------------------------------------------------
    def append(self, type: str, data: Any = None, *, agent: str | None = None) -> Event:  # noqa: A002
        """Append one event durably; returns it with its seq."""
        return self.append_many([(type, data)], agent=agent)[0]

    def append_many(self, events: Iterable[tuple[str, Any]], *, agent: str | None = None) -> list[Event]:
        """Append ``(type, data)`` pairs in one atomic batch; their seqs are consecutive."""
        append, now = self._append_op(events, agent), time.time()
        first = self._backend.apply([append], now=now)[0]
        assert isinstance(first, int)
        return self._appended(append, first, now)

    def _appended(self, append: Append, first: int, now: float) -> list[Event]:
        """The events ``append`` wrote, as reading them back gives them — seqs from ``first``, the
        batch's clock ``now`` (given to ``apply``: every backend stamps the entries with it) as
        their time, their values decoded from the bytes written — without reading them back."""
        log = self._log
        return [self._event(Entry(log, seq, data, codec, now)) for seq, (data, codec) in enumerate(append.items, first)]

    def _append_op(self, events: Iterable[tuple[str, Any]], agent: str | None) -> Append:
        """The one Append that :meth:`append_many` writes (checked and encoded; no I/O): the asyncio
        API applies it on its native backend and makes the events with :meth:`_appended`."""
        if agent is not None and not isinstance(agent, str):
            raise InvalidInputError(f"agent must be a str, got {type(agent).__name__}")
        bodies = [self._body(t, d, agent) for t, d in events]
        if not bodies:
            raise InvalidInputError("append_many() needs at least one (type, data) pair")
        items = tuple(
            self._store.codec.encode(b, f"events[{self.name!r}] {b['t']!r} data", self._log) for b in bodies
        )
        return Append(self._log, items)

    @staticmethod
    def _body(type_name: Any, data: Any, agent: str | None) -> dict[str, Any]:
        _check_name(type_name, "an event type")
        if upcasting.schema_of(data) is not None:
            data = upcasting.versioned(data)
        body: dict[str, Any] = {"t": type_name, "d": data}
        if agent is not None:
            body["a"] = agent
        version = upcasting.current_version(type_name) if upcasting.has_upcasters(type_name) else None
        if version is not None:
            body["v"] = version
        return body

    # -- reading -------------------------------------------------------------
    def _event(self, entry: Entry) -> Event:
        body = self._store.codec.decode(entry.data, entry.codec, self._log)
        data = body.get("d")
        if upcasting.has_upcasters(body["t"]):
            data = upcasting.upcast(body["t"], body.get("v", 1), data)
        return Event(entry.seq, body["t"], data, body.get("a"), to_datetime(entry.created_at), self.name)  # type: ignore[arg-type]

    @property
    def last_seq(self) -> int:
        """The seq of the newest event (0 when the stream is empty)."""
        info = self._backend.log_info(self._log)
        return 0 if info is None else info.last_seq

    def __len__(self) -> int:
        info = self._backend.log_info(self._log)
        return 0 if info is None else info.last_seq - info.first_seq + 1

    def get(self, seq: int) -> Event | None:
        """The event at ``seq``, or None."""
        check_int(seq, "seq")
        found = self._backend.read(self._log, start=seq, stop=seq + 1)
        return self._event(found[0]) if found else None

    def read(
        self,
        start: int = 1,
        stop: int | None = None,
        *,
        limit: int | None = None,
        type: str | Iterable[str] | None = None,  # noqa: A002
        since: dt.datetime | float | None = None,
        until: dt.datetime | float | None = None,
        last: int | None = None,
    ) -> list[Event]:
        """Events with ``start <= seq < stop``, oldest first.

        ``type`` keeps only those types; ``since``/``until`` keep ``since <=
        time < until``; ``limit`` caps how many are returned; ``last=N``
        returns the newest N matching ones.
        """
        if limit is not None:
            check_int(limit, "limit")
        if last is not None:
            check_int(last, "last")
            return self._read_last(start, stop, last, type, since, until)
        found = self.iter(start, stop, type=type, since=since, until=until)
        out: list[Event] = []
        for event in found:
            if limit is not None and len(out) >= limit:
                break
            out.append(event)
        return out

    def iter(
        self,
        start: int = 1,
        stop: int | None = None,
        *,
        type: str | Iterable[str] | None = None,  # noqa: A002
        since: dt.datetime | float | None = None,
        until: dt.datetime | float | None = None,
    ) -> Iterator[Event]:
        """Like :meth:`read`, lazily, a page at a time."""
        check_int(start, "start")
        if stop is not None:
            check_int(stop, "stop")
        types = _types(type)
        lo = _when(since, "since") if since is not None else None
        hi = _when(until, "until") if until is not None else None
        if lo is not None:
            start = max(start, self._first_at(lo))
        if hi is not None:
            end = self._first_at(hi)
            stop = end if stop is None else min(stop, end)
        for entry in self._entries(start, stop):
            when = _micros(entry.created_at)
            if (lo is not None and when < lo) or (hi is not None and when >= hi):
                continue
            event = self._event(entry)
            if types is None or event.type in types:
                yield event

    def _entries(self, start: int, stop: int | None) -> Iterator[Entry]:
        while stop is None or start < stop:
            page = self._backend.read(self._log, start=start, stop=stop, limit=PAGE)
            yield from page
            if len(page) < PAGE:
                return
            start = page[-1].seq + 1

    def _read_last(
        self, start: int, stop: int | None, last: int, types: Any, since: Any, until: Any
    ) -> list[Event]:
        top = stop if stop is not None else self.last_seq + 1
        out: list[Event] = []
        while len(out) < last and top > start:
            need = last - len(out)
            lo = max(start, top - max(need * 2, 100))
            out = self.read(lo, top, type=types, since=since, until=until)[-need:] + out
            top = lo
        return out

    def seq_at(self, when: dt.datetime | float) -> int:
        """The seq of the first event appended at or after ``when`` (``last_seq + 1`` if none).

        Times compare at microsecond precision (that of :attr:`Event.time`), so
        ``seq_at(event.time)`` finds ``event``. A binary search on seq: O(log n)
        single-entry reads.
        """
        return self._first_at(_when(when, "when"))

    def _first_at(self, micros: int) -> int:
        info = self._backend.log_info(self._log)
        if info is None:
            return 1
        lo, hi = info.first_seq, info.last_seq + 1
        while lo < hi:
            mid = (lo + hi) // 2
            found = self._backend.read(self._log, start=mid, limit=1)
            if not found:
                return lo
            if _micros(found[0].created_at) < micros:
                lo = found[0].seq + 1
            else:
                hi = mid
        return lo

    # -- projections ---------------------------------------------------------
    def project(
        self,
        fn: Callable[[S, Event], S],
        initial: S | None = None,
        *,
        snapshot_every: int | None = 1000,
        name: str | None = None,
        version: int = 1,
        as_of: int | None = None,
        at: dt.datetime | float | None = None,
        keep_snapshots: int = 3,
    ) -> S:
        """The state after folding every event (or those up to ``as_of`` seq / time ``at``).

        See :meth:`projection` for the arguments.
        """
        return self.projection(
            fn, initial, snapshot_every=snapshot_every, name=name, version=version,
            as_of=as_of, at=at, keep_snapshots=keep_snapshots,
        ).state

    def projection(
        self,
        fn: Callable[[S, Event], S],
        initial: S | None = None,
        *,
        snapshot_every: int | None = 1000,
        name: str | None = None,
        version: int = 1,
        as_of: int | None = None,
        at: dt.datetime | float | None = None,
        keep_snapshots: int = 3,
    ) -> Projection[S]:
        """Fold events into a state with ``state = fn(state, event)``, starting from a snapshot.

        ``name`` identifies the projection's snapshots (default: ``fn``'s
        module and qualified name; a lambda or nested function without
        ``name`` uses no snapshots); bump ``version`` when ``fn`` changes so
        old snapshots are ignored. ``snapshot_every=N`` stores the state at
        every N-th seq folded (None: store none); ``as_of`` / ``at`` fold only
        up to that seq / time. ``fn`` may mutate and return the state it gets;
        ``initial`` (default None: ``fn`` then receives None with the first event) is never mutated.
        """
        proj = _ProjectionRun(self, fn, name, version, snapshot_every, keep_snapshots)
        target = self._target(as_of, at)
        return proj.run(initial, target)

    def _target(self, as_of: int | None, at: dt.datetime | float | None) -> int:
        if as_of is not None:
            check_int(as_of, "as_of")
        if as_of is not None and at is not None:
            raise InvalidInputError("give as_of (a seq) or at (a time), not both")
        last = self.last_seq
        if at is not None:  # every event appended at or before ``at``
            return min(last, self._first_at(_when(at, "at") + 1) - 1)
        if as_of is not None:
            return min(as_of, last)
        return last

    # -- consumers -----------------------------------------------------------
    def consumer(self, name: str) -> Consumer:
        """A named reader whose acknowledged position is stored (shared by every process)."""
        return Consumer(self, name)


def _types(type: str | Iterable[str] | None) -> frozenset[str] | None:  # noqa: A002
    if type is None:
        return None
    if isinstance(type, str):
        return frozenset([check_name(type, "type")])
    try:
        return frozenset(check_name(t, "each type") for t in type)
    except TypeError:
        raise InvalidInputError(f"type must be an event type or a list of them, got {type!r}") from None


class _ProjectionRun:
    """One fold: find the snapshot, replay what follows it, store new snapshots."""

    def __init__(
        self, stream: EventStream, fn: Callable[[Any, Event], Any], name: str | None,
        version: int, every: int | None, keep: int,
    ) -> None:
        if every is not None:
            check_int(every, "snapshot_every", minimum=1)
        check_int(keep, "keep_snapshots", minimum=1)
        check_int(version, "version", minimum=1)
        if not callable(fn):
            raise InvalidInputError(f"project() needs a function (state, event) -> state, got {fn!r}")
        qualname = getattr(fn, "__qualname__", "<anonymous>")
        label = name if name is not None else f"{getattr(fn, '__module__', '')}.{qualname}"
        # a lambda or nested function has no name that tells it apart from another one
        self.snapshots = name is not None or "<" not in qualname
        self.stream, self.fn, self.every, self.keep = stream, fn, every, keep
        self.name = _check_name(label, "a projection name")
        self.prefix = layout.snapshot_prefix(stream.name, self.name, version)

    def key(self, seq: int) -> str:
        return f"{self.prefix}{_SNAP_TOP - seq:019d}"

    def latest(self, target: int) -> tuple[int, Any] | None:
        """The newest stored snapshot at or before ``target``."""
        if not self.snapshots:
            return None
        found = self.stream._backend.scan(self.prefix, after=self.key(target + 1), limit=1)
        if not found:
            return None
        body = self.stream._store.codec.decode(found[0].data, found[0].codec, found[0].key)
        return int(body["seq"]), body["state"]

    def run(self, initial: Any, target: int) -> Projection[Any]:
        snap = self.latest(target)
        start, state = snap if snap is not None else (0, copy.deepcopy(initial))
        fresh: deque[tuple[int, bytes, str]] = deque(maxlen=self.keep)
        encode, fn, every = self.stream._store.codec.encode, self.fn, self.every
        replayed, seq = 0, start
        for entry in self.stream._entries(start + 1, target + 1):
            state = fn(state, self.stream._event(entry))
            replayed, seq = replayed + 1, entry.seq
            if every is not None and entry.seq % every == 0:
                body = {"seq": entry.seq, "state": state}
                fresh.append((entry.seq, *encode(body, f"projection {self.name!r} state", self.key(entry.seq))))
        if fresh and self.snapshots:
            self.save(fresh)
        return Projection(state, seq, start, replayed)

    def save(self, fresh: Iterable[tuple[int, bytes, str]]) -> None:
        ops: list[Op] = [Put(self.key(seq), data, codec, ANY, None) for seq, data, codec in fresh]
        self.stream._backend.apply(ops)
        stored = self.stream._backend.scan(self.prefix, limit=self.keep + 100)
        old = [Delete(r.key) for r in stored[self.keep :]]
        if old:
            self.stream._backend.apply(old)


class Consumer:
    """A named position in a stream: :meth:`poll` new events, :meth:`ack` what was handled.

    The acknowledged position is stored, so a consumer with the same name in
    another process, or after a restart, continues from it (at-least-once:
    events polled but not acknowledged are delivered again after a restart).
    """

    def __init__(self, stream: EventStream, name: str) -> None:
        self.stream = stream
        self.name = _check_name(name, "a consumer name")
        self._key = layout.consumer_key(stream.name, name)
        self._delivered = 0

    def __repr__(self) -> str:
        return f"<Consumer {self.name!r} of {self.stream.name!r}>"

    @property
    def position(self) -> int:
        """The last acknowledged seq (0: nothing yet)."""
        rec = self.stream._backend.get(self._key)
        if rec is None:
            return 0
        return int(self.stream._store.codec.decode(rec.data, rec.codec, rec.key)["seq"])

    @property
    def lag(self) -> int:
        """How many events are after the acknowledged position."""
        return max(0, self.stream.last_seq - self.position)

    def poll(self, limit: int = 100) -> list[Event]:
        """Up to ``limit`` events after the acknowledged (and already polled) position."""
        check_limit(limit)
        start = max(self.position, self._delivered) + 1
        events = self.stream.read(start, limit=limit)
        if events:
            self._delivered = events[-1].seq
        return events

    def ack(self, seq: int | None = None) -> int:
        """Acknowledge everything up to ``seq`` (default: the last polled); never moves back."""
        target = self._delivered if seq is None else check_int(seq, "ack() seq")
        return self._store_position(target, forward_only=True)

    def seek(self, seq: int) -> int:
        """Set the acknowledged position to ``seq`` (also backwards, to replay)."""
        check_int(seq, "seek() seq")
        self._delivered = seq
        return self._store_position(seq, forward_only=False)

    def _store_position(self, seq: int, *, forward_only: bool) -> int:
        backend, codec = self.stream._backend, self.stream._store.codec
        for _ in range(1000):
            rec = backend.get(self._key)
            current = int(codec.decode(rec.data, rec.codec, rec.key)["seq"]) if rec else 0
            if forward_only and seq <= current:
                return current
            data, name = codec.encode({"seq": seq}, f"consumer {self.name!r} position", self._key)
            try:
                backend.apply([Put(self._key, data, name, rec.version if rec else None, None)])
                return seq
            except ConflictError:
                continue
        raise ConflictError(self._key, None, None)


def list_streams(store: Core, *, after: str | None = None, limit: int = 100) -> list[str]:
    """Names of streams that have events, in name order."""
    check_optional_name(after, "after")
    check_limit(limit)
    logs = store.backend.scan_logs(layout.events_prefix(), after=layout.event_log(after) if after else None, limit=limit)
    return [keys.split(i.log)[1] for i in logs if i.log.endswith("/log")]
