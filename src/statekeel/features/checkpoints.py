"""Checkpoints: snapshots of a session's state and history position — list, restore, fork, diff, prune.

Backend layout, inside the session's partition ``session/S`` (so every batch
stays in one partition and everything expires with the session)::

    session/S/checkpoints         {"next": id, "head": id}: id allocation (compare-and-set) and
                                  the checkpoint the current state descends from
    session/S/cp/<id>             header {"label", "time", "parent", "chain", "seq", "hidden", ...}
    session/S/cpdata/<id>         body {"set": {key: value}, "del": [key, ...]}, optionally compressed
    session/S/view                {"hidden": [[lo, hi], ...]}: history ranges a restore hid

Incremental storage: a body holds only the keys that changed since the
parent checkpoint (``set``) and the keys removed (``del``); every
``full_every``-th checkpoint along a lineage is a full snapshot. ``chain``
lists the ids from that full snapshot to the parent, so materialising any
checkpoint is one header read plus one ``get_many`` of at most ``full_every``
bodies — O(K), whatever the number of checkpoints.

Restore writes the checkpoint's state back (only the keys that differ) and
hides, never deletes, the history appended after the checkpoint: it records
the hidden seq ranges in ``session/S/view``. ``history()``/``messages()`` read
that one small record and skip those ranges; a session that was never
restored has no view record, so its read path costs one point read more.

Pruning deletes checkpoints and re-bases what is kept: a kept delta whose
parent is pruned is rewritten as a full snapshot, and later deltas shorten
their chain to it — in the same atomic batch.

A checkpoint is taken from separate reads of the state, the history bounds and
the view (the protocol has no read snapshots): a write racing with
``checkpoint()`` may or may not be in it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..codec import Codec
from ..core import Core, SessionCore, layout
from ..errors import ConfigurationError, ConflictError, InvalidInputError, NotFoundError, StoreError
from ..models import to_datetime
from ..protocol import ANY, Backend, Delete, Entry, LoadEntries, Put, Record, Touch, keys
from ..core.validate import MAX_INT, check_int, check_name, check_optional_name
from . import checkpoint_labels
from ._duration import Duration, maybe_seconds
from .history_view import merge_ranges, segments

__all__ = [
    "Checkpoint",
    "CheckpointDiff",
    "DEFAULT_FULL_EVERY",
    "create",
    "diff",
    "fork",
    "get",
    "hidden_ranges",
    "list_checkpoints",
    "restore",
    "state_at",
]

DEFAULT_FULL_EVERY = 20
"""A full snapshot every 20 checkpoints along a lineage: a restore reads at most 20 bodies."""

_PAGE = 500
_STATE_PAGE = 50
"""State keys a fork writes per batch: DynamoDB commits at most 100 items in one transaction."""
_RETRIES = 100

@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint of a session."""

    id: int
    """Its number in the session, from 1."""
    label: str | None
    """The label given to :meth:`Session.checkpoint`."""
    created_at: dt.datetime
    """When it was taken (UTC)."""
    parent: int | None
    """The checkpoint the state descended from when it was taken (None: the first, or pruned)."""
    history_seq: int
    """History position: the seq of the last message it includes (0: none)."""
    full: bool
    """True when stored as a full snapshot, False when stored as changes since ``parent``."""
    keys: int
    """How many state keys it holds."""
    stored_keys: int
    """How many keys its body stores (all for a full snapshot, the changes for a delta)."""
    session_id: str
    """The session it belongs to."""


@dataclass(frozen=True, slots=True)
class CheckpointDiff:
    """What changed from checkpoint ``a`` to checkpoint ``b`` (or to now)."""

    added: dict[str, Any]
    """Keys in ``b`` only, with their values."""
    removed: dict[str, Any]
    """Keys in ``a`` only, with their values."""
    changed: dict[str, tuple[Any, Any]]
    """Keys in both with different values: ``(value in a, value in b)``."""
    history_from: int
    """History position of ``a``."""
    history_to: int
    """History position of ``b``."""

    @property
    def unchanged(self) -> bool:
        """True when the state and the history position are the same."""
        return not (self.added or self.removed or self.changed) and self.history_from == self.history_to


# -- keys (see statekeel.core.layout) -------------------------------------------------
meta_key = layout.checkpoints_key
header_key = layout.checkpoint_header_key
body_key = layout.checkpoint_body_key


# -- values -------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (so 1, 1.0 and True differ)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return bool(a.keys() == b.keys()) and all(_same(v, b[k]) for k, v in a.items())
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is float and a != a:
        return bool(b != b)  # NaN
    return bool(a == b)


def _with_compression(codec: Codec, compress: str | None) -> Codec:
    """``codec`` with the same transforms (encryption) but compressing with ``compress``."""
    if compress is None:
        return codec
    if compress not in ("zstd", "zlib"):
        raise ConfigurationError(f"compress={compress!r} is not known; use 'zstd', 'zlib' or None")
    return codec.compressing(compress)


class _Reader:
    """Reads one session's checkpoint records."""

    def __init__(self, session: SessionCore) -> None:
        self.session = session
        self.sid = session.id
        self.core: Core = session.core
        self.backend: Backend = session.backend

    def decode(self, rec: Record) -> Any:
        return self.core.codec.decode(rec.data, rec.codec, rec.key)

    def encode(self, value: Any, what: str, key: str) -> tuple[bytes, str]:
        return self.core.codec.encode(value, what, key)

    def meta(self) -> tuple[Record | None, dict[str, Any]]:
        rec = self.backend.get(meta_key(self.sid))
        return rec, (self.decode(rec) if rec else {"next": 1, "head": None})

    def header(self, cp_id: int) -> dict[str, Any] | None:
        rec = self.backend.get(header_key(self.sid, cp_id))
        return None if rec is None else self.decode(rec)

    def require(self, cp_id: int) -> dict[str, Any]:
        found = self.header(cp_id)
        if found is None:
            raise NotFoundError(
                f"session {self.sid!r} has no checkpoint {cp_id} (pruned, expired or never taken); "
                "see session.checkpoints()"
            )
        return found

    def headers(self) -> Iterator[tuple[int, Record]]:
        prefix = layout.checkpoint_headers_prefix(self.sid)
        after: str | None = None
        while True:
            page = self.backend.scan(prefix, after=after, limit=_PAGE)
            for rec in page:
                yield int(rec.key[len(prefix):]), rec
            if len(page) < _PAGE:
                return
            after = page[-1].key

    def state(self, cp_id: int, header: dict[str, Any]) -> dict[str, Any]:
        """The full state of a checkpoint: its full snapshot plus the deltas after it."""
        ids = [*header["chain"], cp_id]
        bodies = self.backend.get_many([body_key(self.sid, i) for i in ids])
        state: dict[str, Any] = {}
        for cp, rec in zip(ids, bodies):
            if rec is None:
                raise StoreError(
                    f"checkpoint {cp_id} of session {self.sid!r} cannot be rebuilt: the body of "
                    f"checkpoint {cp} it depends on is missing"
                )
            body = self.decode(rec)
            state.update(body["set"])
            for k in body["del"]:
                state.pop(k, None)
        return state

    def current(self) -> dict[str, Record]:
        """The session's live state records by key."""
        prefix = layout.scope_state_prefix("session", self.sid)
        out: dict[str, Record] = {}
        after: str | None = None
        while True:
            page = self.backend.scan(prefix, after=after, limit=_PAGE)
            out.update((keys.unescape(r.key[len(prefix):]), r) for r in page)
            if len(page) < _PAGE:
                return out
            after = page[-1].key

    def history_end(self) -> int:
        info = self.backend.log_info(layout.history_log(self.sid))
        return 0 if info is None else info.last_seq

    def hidden(self) -> list[list[int]]:
        rec = self.backend.get(layout.session_view_key(self.sid))
        return [] if rec is None else [list(r) for r in self.decode(rec)["hidden"]]

    def resolve(self, cp: Any) -> int:
        """A checkpoint id from a Checkpoint, an id or a label (the newest with it)."""
        if isinstance(cp, Checkpoint):
            if cp.session_id != self.sid:
                raise InvalidInputError(
                    f"checkpoint {cp.id} belongs to session {cp.session_id!r}, not {self.sid!r}; "
                    "use fork() on its own session"
                )
            return cp.id
        if isinstance(cp, int) and not isinstance(cp, bool) and 1 <= cp <= MAX_INT:
            return cp
        if isinstance(cp, str) and cp:
            labelled = checkpoint_labels.lookup(self.session, cp)
            if labelled is not None:
                return labelled
            found = [i for i, rec in self.headers() if self.decode(rec).get("label") == cp]
            if not found:
                raise NotFoundError(f"session {self.sid!r} has no checkpoint labelled {cp!r}")
            return found[-1]
        raise InvalidInputError(f"a checkpoint is a Checkpoint, an id (int >= 1) or a label (str), got {cp!r}")

    def checkpoint(self, cp_id: int, header: dict[str, Any]) -> Checkpoint:
        return Checkpoint(
            cp_id, header.get("label"), to_datetime(header["time"]),  # type: ignore[arg-type]
            header.get("parent"), header["seq"], not header["chain"], header["keys"],
            header["stored"], self.sid,
        )


# -- taking -------------------------------------------------------------------
def create(
    session: SessionCore,
    label: str | None = None,
    *,
    full_every: int = DEFAULT_FULL_EVERY,
    compress: str | None = None,
    replace: bool = False,
) -> Checkpoint:
    """Snapshot the session's state and history position; store only what changed since the parent.

    Labels are unique per session (:mod:`.checkpoint_labels`): a label in use is refused
    unless ``replace=True``, which moves it to the new checkpoint.
    """
    check_optional_name(label, "a checkpoint label")
    check_int(full_every, "full_every", minimum=1)
    if not isinstance(replace, bool):
        raise InvalidInputError(f"checkpoint(replace=) takes True or False, got {replace!r}")
    r = _Reader(session)
    body_codec = _with_compression(r.core.codec, compress)
    for _ in range(_RETRIES):
        meta_rec, meta = r.meta()
        parent_id = meta["head"]
        parent = r.header(parent_id) if parent_id is not None else None
        current = {k: r.decode(rec) for k, rec in r.current().items()}
        if parent is None or len(parent["chain"]) + 1 >= full_every:
            body, chain = {"set": current, "del": []}, []
        else:
            before = r.state(parent_id, parent)
            changed = {k: v for k, v in current.items() if k not in before or not _same(before[k], v)}
            body = {"set": changed, "del": [k for k in before if k not in current]}
            chain = [*parent["chain"], parent_id]
        cp_id = meta["next"]
        header = {
            "label": label, "time": time.time(), "parent": parent_id if parent is not None else None,
            "chain": chain, "seq": r.history_end(), "hidden": r.hidden(), "keys": len(current),
            "stored": len(body["set"]) + len(body["del"]),
        }
        label_ops = checkpoint_labels.claim(session, label, cp_id, replace)
        try:
            _write_new(r, meta_rec, {"next": cp_id + 1, "head": cp_id}, cp_id, header, body, body_codec,
                       label_ops)
        except ConflictError:
            continue
        return r.checkpoint(cp_id, header)
    raise ConflictError(meta_key(session.id), None, None)


def _write_new(
    r: _Reader, meta_rec: Record | None, meta: dict[str, Any], cp_id: int,
    header: dict[str, Any], body: dict[str, Any], body_codec: Codec, label_ops: checkpoint_labels.LabelOps,
) -> None:
    mkey, hkey, bkey = meta_key(r.sid), header_key(r.sid, cp_id), body_key(r.sid, cp_id)
    what = f"checkpoint {cp_id} of session {r.sid!r}"
    m_data, m_codec = r.encode(meta, f"{what} (index)", mkey)
    h_data, h_codec = r.encode(header, f"{what} (header)", hkey)
    b_data, b_codec = body_codec.encode(body, f"{what} state", bkey)
    expect = meta_rec.version if meta_rec else None
    r.session.apply(lambda exp: [
        Put(mkey, m_data, m_codec, expect, exp),
        Put(hkey, h_data, h_codec, None, exp),
        Put(bkey, b_data, b_codec, None, exp),
        *label_ops(exp),
    ])


# -- reading ------------------------------------------------------------------
def list_checkpoints(session: SessionCore) -> list[Checkpoint]:
    """Every checkpoint of the session, oldest first (headers only: bodies are not read)."""
    r = _Reader(session)
    return [r.checkpoint(i, r.decode(rec)) for i, rec in r.headers()]


def get(session: SessionCore, cp: Any) -> Checkpoint:
    """One checkpoint by Checkpoint, id or label."""
    r = _Reader(session)
    cp_id = r.resolve(cp)
    return r.checkpoint(cp_id, r.require(cp_id))


def state_at(session: SessionCore, cp: Any) -> dict[str, Any]:
    """The session state a checkpoint holds (O(full_every) reads)."""
    r = _Reader(session)
    cp_id = r.resolve(cp)
    return r.state(cp_id, r.require(cp_id))


def diff(session: SessionCore, a: Any, b: Any = None) -> CheckpointDiff:
    """What changed from checkpoint ``a`` to checkpoint ``b`` (None: to the current state)."""
    r = _Reader(session)
    a_id = r.resolve(a)
    ha = r.require(a_id)
    sa = r.state(a_id, ha)
    if b is None:
        sb = {k: r.decode(rec) for k, rec in r.current().items()}
        seq_b = r.history_end()
    else:
        b_id = r.resolve(b)
        hb = r.require(b_id)
        sb, seq_b = r.state(b_id, hb), hb["seq"]
    return CheckpointDiff(
        {k: v for k, v in sb.items() if k not in sa},
        {k: v for k, v in sa.items() if k not in sb},
        {k: (v, sb[k]) for k, v in sa.items() if k in sb and not _same(v, sb[k])},
        ha["seq"], seq_b,
    )


# -- restore ------------------------------------------------------------------
def restore(session: SessionCore, cp: Any) -> Checkpoint:
    """Roll the state back to ``cp`` and hide the history appended after it (kept, not deleted)."""
    r = _Reader(session)
    cp_id = r.resolve(cp)
    header = r.require(cp_id)
    _refuse_trimmed(r, cp_id, header["seq"])
    target = r.state(cp_id, header)
    for _ in range(_RETRIES):
        meta_rec, meta = r.meta()
        end = r.history_end()
        hidden = merge_ranges([*header["hidden"], *([[header["seq"] + 1, end]] if end > header["seq"] else [])])
        ops = _restore_ops(r, target, r.current())
        mkey, vkey = meta_key(r.sid), layout.session_view_key(r.sid)
        m_data, m_codec = r.encode({"next": meta["next"], "head": cp_id}, "checkpoint index", mkey)
        v_data, v_codec = r.encode({"hidden": hidden}, "history view", vkey)
        expect = meta_rec.version if meta_rec else None
        try:
            session.apply(lambda exp: [
                *(Put(k, d, c, e, exp) if d is not None else Delete(k, e) for k, d, c, e in ops),
                Put(mkey, m_data, m_codec, expect, exp),
                Put(vkey, v_data, v_codec, ANY, exp) if hidden else Delete(vkey),
                Touch(layout.session_meta_key(r.sid)),
            ])
        except ConflictError:
            continue
        return r.checkpoint(cp_id, header)
    raise ConflictError(meta_key(session.id), None, None)


def _refuse_trimmed(r: _Reader, cp_id: int, seq: int) -> None:
    """Refuse a restore whose newest message was trimmed (or cleared): the history it would
    bring back no longer exists. Its state is intact: ``diff()`` against it still works."""
    if seq < 1:
        return
    info = r.backend.log_info(layout.history_log(r.sid))
    if info is None or seq < info.first_seq:
        raise NotFoundError(
            f"checkpoint {cp_id} of session {r.sid!r} includes history up to seq {seq}, which was "
            "trimmed or cleared; it cannot be restored (diff() against it still reads its state)"
        )


def _restore_ops(
    r: _Reader, target: dict[str, Any], current: dict[str, Record]
) -> list[tuple[str, bytes | None, str, int | None]]:
    """(key, data or None to delete, codec, expected version) for each key that differs."""
    out: list[tuple[str, bytes | None, str, int | None]] = []
    for name, gone in current.items():
        if name not in target:
            out.append((gone.key, None, "", gone.version))
    for name, value in target.items():
        rec = current.get(name)
        if rec is not None and _same(r.decode(rec), value):
            continue
        full = layout.state_key("session", r.sid, name)
        data, codec = r.encode(value, f"session:{r.sid}[{name!r}]", full)
        out.append((full, data, codec, rec.version if rec else None))
    return out


def hidden_ranges(session: SessionCore) -> list[tuple[int, int]]:
    """The history seq ranges (inclusive) currently hidden by restores."""
    return [(lo, hi) for lo, hi in _Reader(session).hidden()]


# -- fork ---------------------------------------------------------------------
def fork(session: SessionCore, cp: Any, into: str, open_new: Callable[[], SessionCore]) -> None:
    """Fill a new session ``into`` (made by ``open_new``) with ``cp``'s state and visible history up to it."""
    r = _Reader(session)
    cp_id = r.resolve(cp)
    header = r.require(cp_id)
    state = r.state(cp_id, header)
    if r.backend.get(layout.session_meta_key(into)) is not None:
        raise InvalidInputError(f"session {into!r} already exists; fork into a new session id")
    new = open_new()
    items = list(state.items())
    for i in range(0, len(items), _STATE_PAGE):
        _fork_state(new, items[i : i + _STATE_PAGE])
    src_log, dst_log = layout.history_log(r.sid), layout.history_log(into)
    copied = 0
    for lo, hi in segments(header["hidden"], 1, header["seq"] + 1):
        while hi is not None and lo < hi:
            page = r.backend.read(src_log, start=lo, stop=hi, limit=_PAGE)
            if not page:
                break
            copied = _fork_history(new, src_log, dst_log, page, copied)
            lo = page[-1].seq + 1


def _fork_state(new: SessionCore, items: list[tuple[str, Any]]) -> None:
    codec = new.core.codec
    full = [(layout.state_key("session", new.id, k), k, v) for k, v in items]
    encoded = [(key, *codec.encode(v, f"session:{new.id}[{k!r}]", key)) for key, k, v in full]
    new.apply(lambda exp: [Put(k, d, c, None, exp) for k, d, c in encoded])


def _fork_history(new: SessionCore, src_log: str, dst_log: str, page: list[Entry], copied: int) -> int:
    codec = new.core.codec
    entries = tuple(
        Entry(dst_log, copied + i + 1, *codec.encode(
            codec.decode(e.data, e.codec, src_log), f"session[{new.id!r}] message {copied + i + 1}", dst_log
        ), e.created_at)
        for i, e in enumerate(page)
    )
    new.apply(lambda exp: [LoadEntries(dst_log, entries, exp)])
    return copied + len(entries)
