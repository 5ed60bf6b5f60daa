"""``StatekeelSaver``: a LangGraph checkpointer over any statekeel URL or store.

    from statekeel.integrations.langgraph import StatekeelSaver

    saver = StatekeelSaver.from_url("sqlite:///agent.db")      # or StatekeelSaver(store)
    graph = builder.compile(checkpointer=saver)

Each thread is one statekeel partition (``langgraph/<thread>``), so a checkpoint, its
new channel values and the head it moves are written in one atomic batch on every
backend, Redis Cluster included. Checkpoint keys sort newest first, so ``get_tuple``
of the latest checkpoint is one scan and ``list(before=, limit=)`` costs O(returned).
Growing lists are stored as deltas (:mod:`.deltas`); a writer that lost the head gets
:class:`CheckpointForkError` (:mod:`.fencing`). Async methods run the same sync code
on the saver's own worker thread, never on the event loop (given an AsyncStore on PostgreSQL or
Redis, the per-step ones on its asyncio driver: :mod:`._async`, :mod:`._steps`).
"""

from __future__ import annotations

import builtins
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ...aio import AsyncStore
from ...codec import Codec
from ...core import Core, layout
from ...core.validate import MAX_INT, check_int, short_repr
from ...errors import InvalidInputError
from ...features.retention import store_retention
from ...protocol import ANY, Op, Put
from ...security.guard import SecretGuard
from ...store import Store
from ...store import open as open_store
from .._given import given
from . import _admin
from ._async import AsyncSaverMethods
from ._io import HeadMove, PutPlan, head_moves, new_writes
from ._steps import GetMany, Scan, Steps, run, run_iter
from ._memo import ValueMemo
from ._reads import Stored, TupleBuilder, Wanted, config_of, decode_checkpoint, listing
from ._guard import active, clean, screen, screen_values
from ._records import (FastZlib, ThreadKeys, Typed, check_thread_id, config_text, configurable,
                       frame, invert_id, pack, pack_raw, thread_and_ns)
from .deltas import MISSING, Planned, ValueCache, plan_value
from .fencing import FORK_SOURCES, HeadMarks

__all__ = ["StatekeelSaver"]



def _list_limit(limit: Any) -> int:
    """``list(limit=)``: an int >= 0 (0: nothing). A negative one is refused: LangGraph's own savers
    disagree on it (InMemorySaver returns nothing, SqliteSaver everything, PostgresSaver fails)."""
    if type(limit) is not int or not 0 <= limit <= MAX_INT:
        raise InvalidInputError(
            f"limit must be None (every checkpoint) or an int from 0 to 2**63 - 1, got {type(limit).__name__} "
            f"{short_repr(limit)}"
        )
    return limit


class StatekeelSaver(AsyncSaverMethods, BaseCheckpointSaver[str]):
    """A LangGraph checkpointer storing threads in a statekeel store.

    ``core`` is a :class:`statekeel.Store` (or any :class:`~statekeel.core.Core`), or an
    :class:`~statekeel.aio.AsyncStore` — then ``aput``, ``aput_writes``, ``aget_tuple`` and
    ``alist`` of a thread run on its native asyncio driver on PostgreSQL and Redis
    (:mod:`._steps`; everything else on its worker):
    a store opened with ``encryption=`` encrypts everything written here, metadata
    and pending writes included; ``store.tenant(t)`` gives a saver that sees only
    tenant ``t``'s threads. ``delta_min_bytes``, ``max_chain`` and ``chain_share`` tune when a
    growing list gets a new full snapshot, ``segment`` how many links a cold read follows at most
    between two segments (:mod:`.deltas`; 0: no segments); ``workers`` is the number of
    threads the async methods run on. ``reuse_values`` keeps the channel values of each
    thread's newest checkpoint in memory, so the next turn does not decode the whole
    state again (:mod:`._memo`; turn it off for graphs that mutate checkpointed
    messages in place).
    """

    def __init__(
        self,
        core: Core | AsyncStore,
        *,
        serde: SerializerProtocol | None = None,
        delta_min_bytes: int = 16_384,
        max_chain: int = 1_000,
        chain_share: float = 1.0,
        segment: int = 8,
        workers: int = 1,
        reuse_values: bool = True,
    ) -> None:
        super().__init__(serde=serde)
        self.core, self._worker, self._owns_worker, self._lane = given(core, workers)
        """``_lane``: an AsyncStore's native lane (PostgreSQL, Redis), where the per-step async methods run."""
        self.delta_min_bytes = check_int(delta_min_bytes, "delta_min_bytes")
        self.max_chain = check_int(max_chain, "max_chain")
        if not isinstance(chain_share, (int, float)) or isinstance(chain_share, bool) or not 0 <= chain_share <= 1e6:
            raise InvalidInputError(f"chain_share must be a number >= 0 (e.g. 0.5), got {chain_share!r}")
        self.chain_share = float(chain_share)
        self.segment = check_int(segment, "segment")
        self._cache = ValueCache()
        self._zlib: tuple[Codec, Codec, Codec] | None = None
        """(the store's codec, it compressing, it as is): see :meth:`_codecs`."""
        if not isinstance(reuse_values, bool):
            raise InvalidInputError(f"reuse_values must be True or False, got {reuse_values!r}")
        self._memo = ValueMemo() if reuse_values else None
        self._heads = HeadMarks()
        self._indexed_runs: set[tuple[str, str]] = set()
        self._known_heads: dict[tuple[str, str], tuple[str | None, int | None]] = {}
        self._thread_keys: dict[tuple[str, str], ThreadKeys] = {}
        self._owned: Store | None = None

    @classmethod
    def from_url(cls, url: str, *, serde: SerializerProtocol | None = None, **open_options: Any) -> StatekeelSaver:
        """A saver on a store it opens (``statekeel.open(url, **open_options)``) and closes with :meth:`close`."""
        store = open_store(url, **open_options)
        saver = cls(store, serde=serde)
        saver._owned = store
        return saver

    def close(self) -> None:
        """Stop the async worker (not an AsyncStore's); close the store if :meth:`from_url` opened it."""
        if self._owns_worker:
            self._worker.shutdown()
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> StatekeelSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The named checkpoint, or the newest of the thread namespace, with its pending writes."""
        return self._got(config, run(self.core.backend, self._getting(config)))

    def _getting(self, config: RunnableConfig) -> Steps[tuple[CheckpointTuple, TupleBuilder] | None]:
        """:meth:`get_tuple`'s reads as sans-I/O steps (the sync and the asyncio call share them)."""
        thread, ns, checkpoint_id = self._wanted(config)
        stored = yield from self._finding(thread, ns, checkpoint_id)
        if stored is None:
            return None
        builder = TupleBuilder(self.core, self.serde, self._memo)
        return (yield from builder.building([stored]))[0], builder

    def _got(self, config: RunnableConfig, got: tuple[CheckpointTuple, TupleBuilder] | None) -> CheckpointTuple | None:
        if got is None:
            return None
        thread, ns, _ = self._wanted(config)
        self._remember_values(thread, ns, got[0], got[1])
        return got[0]

    @staticmethod
    def _wanted(config: RunnableConfig) -> tuple[str, str, str | None]:
        """The thread, namespace and checkpoint id (None: the newest) ``get_tuple`` reads."""
        thread, ns = thread_and_ns(configurable(config))
        return thread, ns, get_checkpoint_id(config)

    def _finding(self, thread: str, ns: str, checkpoint_id: str | None) -> Steps[Stored | None]:
        """The stored checkpoint, noting for fencing whether it was the head."""
        if checkpoint_id is None:
            recs = yield Scan(layout.langgraph_checkpoints_prefix(thread, ns), None, 1)
            if not recs:
                return None
            stored = decode_checkpoint(self.core, thread, recs[0])
            self._heads.saw_head(thread, ns, stored.checkpoint_id)
            return stored
        cp_key = layout.langgraph_checkpoint_key(thread, ns, invert_id(checkpoint_id))
        rec, head = yield GetMany([cp_key, layout.langgraph_head_key(thread, ns)])
        if rec is None:
            return None
        if head is not None and self._decode(head)["id"] == checkpoint_id:
            self._heads.saw_head(thread, ns, checkpoint_id)
        else:
            self._heads.saw_older(thread, ns, checkpoint_id)
        return decode_checkpoint(self.core, thread, rec)

    def _remember_values(self, thread: str, ns: str, tup: CheckpointTuple, builder: TupleBuilder) -> None:
        """After reading a thread's checkpoint, its growing lists can be extended by deltas."""
        reader = builder.readers[ns]
        values = tup.checkpoint["channel_values"]
        versions = tup.checkpoint["channel_versions"]
        for ch, version in versions.items():
            if ch in values and reader.loaded(ch, version):  # else remembered: its chain state is current
                self._cache.set(thread, ns, ch, reader.state(ch, version, values[ch]))
        if self._memo is not None:
            self._memo.remember(thread, ns, versions, values)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first per namespace; ``before``/``limit`` cost O(returned)."""
        threads = [check_thread_id(configurable(config).get("thread_id"))] if config else _admin.all_threads(self.core)
        yield from run_iter(self.core.backend, self._listing(config, threads, filter, before, limit))

    def _listing(
        self, config: RunnableConfig | None, threads: Iterable[str], filt: dict[str, Any] | None,
        before: RunnableConfig | None, limit: int | None,
    ) -> Steps[None]:  # fmt: skip
        """:meth:`list` as sans-I/O steps (the sync and the asyncio listing share them)."""
        conf = configurable(config) if config else {}
        ns = None if conf.get("checkpoint_ns") is None else config_text(conf["checkpoint_ns"], "checkpoint_ns")
        wanted_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before and configurable(before, "before") else None
        left = None if limit is None else _list_limit(limit)
        return listing(self.core, self.serde, threads, Wanted(ns, wanted_id, before_id, filt), left)

    # -- writing ---------------------------------------------------------------------------
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store ``checkpoint`` and its new channel values, and move the head — one atomic batch."""
        plan = self._planned_put(config, checkpoint, metadata, new_versions)
        return self._put_done(plan, run(self.core.backend, self._committing(plan)))

    def _planned_put(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> PutPlan:  # fmt: skip
        """What :meth:`put` writes (no I/O: the sync and the asyncio put share it)."""
        conf = configurable(config)
        thread, ns = thread_and_ns(conf)
        parent: str | None = conf.get("checkpoint_id") or None
        cp_id = str(checkpoint["id"])
        full_metadata = get_checkpoint_metadata(config, metadata)
        planned = self._plan_values(thread, ns, checkpoint, new_versions)
        meta = self.serde.dumps_typed(full_metadata)
        guard = active(self.core.codec.guard)  # before anything is written: docs/langgraph.md, "Secrets"
        if guard is not None and not clean(guard, [meta, *(p.fresh_typed for p in planned.values())]):
            checkpoint, full_metadata, meta = self._screened(guard, thread, ns, checkpoint, planned, full_metadata, meta)
        body = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        tk = self._keys(thread, ns)
        cp_key = tk.checkpoint(invert_id(cp_id))
        doc = {"c": pack(self.serde.dumps_typed(body)), "m": pack(meta), "p": parent}
        ops: builtins.list[Op] = [
            self._put_op(tk.blob(ch, str(v)), p.doc, f"channel {ch!r}")
            for (ch, v), p in planned.items()
        ]
        ops.append(self._put_op(cp_key, doc, "a LangGraph checkpoint"))
        fenced = (
            parent is not None
            and full_metadata.get("source") not in FORK_SOURCES
            and self._heads.extends(thread, ns, parent)
        )
        return PutPlan(thread, ns, cp_id, parent if fenced else None, ops, full_metadata.get("run_id"), planned,
                       checkpoint)  # fmt: skip

    def _put_done(self, plan: PutPlan, head: tuple[str, int | None]) -> RunnableConfig:
        """After the batch: what this saver now knows of the thread (head, values, runs listed)."""
        thread, ns, cp_id = plan.thread, plan.ns, plan.cp_id
        if isinstance(plan.run_id, str) and plan.run_id:
            self._indexed_runs.add((plan.run_id, thread))
        self._known_heads[(thread, ns)] = head
        self._heads.saw_head(thread, ns, cp_id)
        for (ch, _), p in plan.planned.items():
            self._cache.set(thread, ns, ch, p.state)
        if self._memo is not None:
            self._memo.remember(thread, ns, plan.checkpoint["channel_versions"], plan.checkpoint["channel_values"])
        return config_of(thread, ns, cp_id)

    def _plan_values(
        self, thread: str, ns: str, checkpoint: Checkpoint, new_versions: ChannelVersions
    ) -> dict[tuple[str, Any], Planned]:
        values = checkpoint["channel_values"]
        return {(ch, v): self._plan(thread, ns, ch, v, values.get(ch, MISSING)) for ch, v in new_versions.items()}

    def _plan(self, thread: str, ns: str, channel: str, version: Any, value: Any) -> Planned:
        return plan_value(str(version), value, self._cache.get(thread, ns, channel), self.serde.dumps_typed,
                          min_bytes=self.delta_min_bytes, max_chain=self.max_chain, chain_share=self.chain_share,
                          segment=self.segment)  # fmt: skip

    def _screened(self, guard: SecretGuard, thread: str, ns: str, checkpoint: Checkpoint,
                  planned: dict[tuple[str, Any], Planned], metadata: CheckpointMetadata,
                  meta: Typed) -> tuple[Checkpoint, CheckpointMetadata, Typed]:  # fmt: skip
        """The checkpoint and metadata with what the secret guard redacted (:mod:`._guard`); raises in refuse mode."""
        where = f"LangGraph thread {thread!r}{f' namespace {ns!r}' if ns else ''}"
        changed = screen_values(guard, planned, checkpoint["channel_values"], where,
                                lambda ch, v, value: self._plan(thread, ns, ch, v, value))  # fmt: skip
        if changed:  # the saver remembers the redacted values: a later read restores what was stored
            checkpoint = {**checkpoint, "channel_values": {**checkpoint["channel_values"], **changed}}
        cleaned = screen(guard, metadata, meta, f"{where} checkpoint metadata")
        return checkpoint, cleaned, meta if cleaned is metadata else self.serde.dumps_typed(cleaned)

    def _committing(self, plan: PutPlan) -> Steps[tuple[str, int | None]]:
        """``plan``'s ops applied with the head moved by compare-and-set (:func:`._io.head_moves`)."""
        thread, ns, run_id = plan.thread, plan.ns, plan.run_id
        head_key = self._keys(thread, ns).head
        move = HeadMove(
            head_key, lambda newest, version: self._put_op(head_key, {"id": newest}, "a LangGraph thread head", version),
            lambda rec: str(self._decode(rec)["id"]), lambda new: self._index_ops(thread, new, run_id), thread, ns,
        )  # fmt: skip
        return head_moves(move, self._known_heads.get((thread, ns)), plan.cp_id, plan.must_extend, plan.ops)

    def _index_ops(self, thread: str, new_thread: bool, run_id: Any) -> builtins.list[Op]:
        """Listing entries (another partition: written first where batches stay in one)."""
        ops: builtins.list[Op] = []
        if new_thread:
            ops.append(self._put_op(layout.langgraph_thread_index_key(thread), {}, "a LangGraph thread listing"))
        if isinstance(run_id, str) and run_id and (run_id, thread) not in self._indexed_runs:
            ops.append(self._put_op(layout.langgraph_run_index_key(run_id, thread), {}, "a LangGraph run listing"))
        return ops

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Store a task's writes; a write already stored under (task_id, idx) is kept (idempotent),
        the special channels (error, interrupt, ...) are overwritten."""
        run(self.core.backend, new_writes(self._write_ops(config, writes, task_id, task_path)))

    def _write_ops(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> builtins.list[Put]:
        """What :meth:`put_writes` puts (no I/O: the sync and the asyncio call share it)."""
        conf = configurable(config)
        thread, ns = thread_and_ns(conf)
        inverted = invert_id(str(conf["checkpoint_id"]))
        tk = self._keys(thread, ns)
        ops: dict[str, Put] = {}
        typed = [self.serde.dumps_typed(value) for _, value in writes]
        if (guard := active(self.core.codec.guard)) is not None and not clean(guard, typed):
            where = f"LangGraph thread {thread!r} task {task_id!r} write to"
            typed = [t if (c := screen(guard, v, t, f"{where} {ch!r}")) is v else self.serde.dumps_typed(c)
                     for (ch, v), t in zip(writes, typed)]  # fmt: skip
        for i, (channel, _value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            key = tk.write(inverted, str(task_id), idx)
            doc = {"c": channel, "p": task_path, **pack_raw(typed[i])}
            ops[key] = self._put_op(key, doc, f"write to {channel!r}", None if idx >= 0 else ANY)
        return list(ops.values())

    def _put_op(self, key: str, doc: dict[str, Any], what: str, expect: Any = ANY) -> Put:
        """A value or a pending write (``"b"`` holds bytes) as a binary record (:func:`._records.frame`),
        its bytes already compressed, through the store's own codec; anything else as JSON."""
        as_json, as_is = self._codecs()
        if type(doc.get("b")) is bytes:
            data, name = as_is.encode_bytes(frame(doc), what, key)
        else:
            data, name = as_json.encode(doc, what, key)
        return Put(key, data, name, expect)

    def _keys(self, thread: str, ns: str) -> ThreadKeys:
        """The thread namespace's keys (bounded: a saver serving many threads rebuilds them)."""
        tk = self._thread_keys.get((thread, ns))
        if tk is None:
            if len(self._thread_keys) >= 4096:
                self._thread_keys.clear()
            tk = self._thread_keys[(thread, ns)] = ThreadKeys(thread, ns)
        return tk

    def _codecs(self) -> tuple[Codec, Codec]:
        """The codecs of the saver's records: JSON ones (checkpoints, heads, listings) compressed
        from 200 bytes when the store does not compress already, written by ISA-L
        (:class:`._records.FastZlib`, ~5x faster than zlib's level 6, read by the codec's zlib, so
        the records stay ``json+zlib`` as before); binary ones (values, pending writes, whose bytes
        :func:`._records.pack_raw` compressed with zstd) with the store's own settings.

        Without the codec's secret guard: every LangGraph value reaches the codec as serialized
        bytes, which the guard does not look into (it would scan compressed noise); the saver
        screens the objects themselves before serializing them (:mod:`._guard`)."""
        base = self.core.codec
        if self._zlib is None or self._zlib[0] is not base:
            own = base if base._compressor is not None else base._with(_compressor=FastZlib(), compress_min_bytes=200)
            self._zlib = (base, own._unguarded(), base._unguarded())
        return self._zlib[1], self._zlib[2]

    def _decode(self, rec: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.core.codec.decode(rec.data, rec.codec, rec.key))

    # -- thread administration -------------------------------------------------------------
    def delete_thread(self, thread_id: str) -> None:
        """Remove every checkpoint, value and write of the thread, and its listing."""
        thread = check_thread_id(thread_id)
        self._forget(thread)
        _admin.delete_thread(self.core, thread)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove the checkpoints (and their writes) the given runs created, in every thread."""
        for thread in _admin.delete_for_runs(self.core, self.serde, [str(r) for r in run_ids]):
            self._forget(thread)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, value and write of a thread to another (same ids)."""
        target = check_thread_id(target_thread_id)
        self._forget(target)
        _admin.copy_thread(self.core, self.serde, check_thread_id(source_thread_id), target)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's newest checkpoint (and the values it needs,
        delta chains included, and the ancestors a ``DeltaChannel`` is rebuilt from);
        ``"delete"``: remove the threads."""
        _admin.check_strategy(strategy)
        for thread in map(check_thread_id, thread_ids):
            self._forget(thread)
            _admin.prune(self.core, self.serde, thread, strategy)

    def apply_retention(self, thread_ids: Sequence[str] | None = None, *, checkpoints: int | None = None) -> int:
        """Apply statekeel's retention cap to LangGraph threads (all of them by default): keep each
        namespace's newest ``checkpoints`` checkpoints — by default the store's
        ``Retention(checkpoints=K)`` (``store.set_retention``); no cap, nothing happens. What is
        kept stays restorable (values, delta chains, pending writes and interrupts, ``DeltaChannel``
        ancestors). Returns the number of checkpoints removed. Maintenance, like ``store.gc()``:
        never on the write path."""
        keep = store_retention(self.core).checkpoints if checkpoints is None else check_int(checkpoints, "checkpoints")
        if keep is None:
            return 0
        threads = _admin.all_threads(self.core) if thread_ids is None else map(check_thread_id, thread_ids)
        removed = 0
        for thread in list(threads):
            self._forget(thread)
            removed += _admin.prune(self.core, self.serde, thread, "keep_latest", keep=max(keep, 1))
        return removed

    def _forget(self, thread: str) -> None:
        self._cache.forget_thread(thread)
        if self._memo is not None:
            self._memo.forget_thread(thread)
        self._heads.forget_thread(thread)
        self._indexed_runs = {(r, t) for r, t in self._indexed_runs if t != thread}
        for key in [k for k in list(self._known_heads) if k[0] == thread]:  # list(): one atomic copy
            self._known_heads.pop(key, None)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """``<counter>.<random>``: sortable, unique across forks of one thread, and short (every
        checkpoint stores a version per channel and per node that saw it)."""
        if current is None:
            number = 0
        elif isinstance(current, (int, float)):
            number = int(current)
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:010d}.{random.getrandbits(32):08x}"
