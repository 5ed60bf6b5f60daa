"""The saver's native async methods: the sync code on the saver's worker thread, or on the loop.

The event loop never blocks on storage: each call hops to the worker (one thread by
default, so calls run in the order they were made, as LangGraph expects of a
checkpointer), and ``alist`` pulls its iterator there in chunks. A saver given an
:class:`~statekeel.aio.AsyncStore` on PostgreSQL or Redis runs ``aput``, ``aput_writes``,
``aget_tuple`` and ``alist`` of a thread — the calls of every step of a graph — on its asyncio
driver instead: the same code as the sync methods, as sans-I/O steps (:mod:`._steps`), after
the worker calls made before them (as an AsyncStore's native calls are).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from ._io import PutPlan, new_writes
from ._reads import TupleBuilder
from ._records import check_thread_id, configurable
from ._steps import Steps, arun, arun_iter

if TYPE_CHECKING:
    from ...aio._native import Lane
    from ...aio._worker import Worker
    from ...protocol import Put

__all__ = ["AsyncSaverMethods"]


class AsyncSaverMethods:
    """Mixed into :class:`~.saver.StatekeelSaver`; every method awaits its sync twin."""

    _worker: Worker
    _lane: Lane | None

    if TYPE_CHECKING:

        def _listing(self, config: RunnableConfig | None, threads: Iterable[str], filt: dict[str, Any] | None,
                     before: RunnableConfig | None, limit: int | None) -> Steps[None]: ...  # fmt: skip
        def _getting(self, config: RunnableConfig) -> Steps[tuple[CheckpointTuple, TupleBuilder] | None]: ...
        def _got(self, config: RunnableConfig,
                 got: tuple[CheckpointTuple, TupleBuilder] | None) -> CheckpointTuple | None: ...  # fmt: skip
        def _planned_put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                         new_versions: ChannelVersions) -> PutPlan: ...  # fmt: skip
        def _committing(self, plan: PutPlan) -> Steps[tuple[str, int | None]]: ...
        def _put_done(self, plan: PutPlan, head: tuple[str, int | None]) -> RunnableConfig: ...
        def _write_ops(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                       task_path: str) -> list[Put]: ...  # fmt: skip

        def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None: ...
        def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                 before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]: ...  # fmt: skip
        def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                new_versions: ChannelVersions) -> RunnableConfig: ...  # fmt: skip
        def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                       task_path: str = "") -> None: ...  # fmt: skip
        def delete_thread(self, thread_id: str) -> None: ...
        def delete_for_runs(self, run_ids: Sequence[str]) -> None: ...
        def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None: ...
        def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None: ...
        def apply_retention(self, thread_ids: Sequence[str] | None = None, *, checkpoints: int | None = None) -> int: ...
        def get_delta_channel_history(self, *, config: RunnableConfig,
                                      channels: Sequence[str]) -> Mapping[str, DeltaChannelHistory]: ...  # fmt: skip

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async :meth:`get_tuple` (natively on an AsyncStore's PostgreSQL or Redis driver)."""
        lane = self._lane
        if lane is None:
            return await self._worker.run(lambda: self.get_tuple(config))
        async with lane.turn():
            got = await arun(lane.backend, self._getting(config))
        return self._got(config, got)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async :meth:`list` (natively on an AsyncStore's PostgreSQL or Redis driver, for one thread;
        every thread's listing walks the thread index on the worker)."""
        lane = self._lane
        if lane is None or not config:
            async for tup in self._worker.iterate(lambda: self.list(config, filter=filter, before=before, limit=limit),
                                                  100):  # fmt: skip
                yield tup
            return
        threads = [check_thread_id(configurable(config).get("thread_id"))]
        steps = self._listing(config, threads, filter, before, limit)
        async with lane.turn():
            async for tup in arun_iter(lane.backend, steps):
                yield tup

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        """Async :meth:`put` (natively on an AsyncStore's PostgreSQL or Redis driver)."""
        lane = self._lane
        if lane is None:
            return await self._worker.run(lambda: self.put(config, checkpoint, metadata, new_versions))
        async with lane.turn():  # planned after the worker calls made before (a delete forgets what it uses)
            plan = self._planned_put(config, checkpoint, metadata, new_versions)
            return self._put_done(plan, await arun(lane.backend, self._committing(plan)))

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Async :meth:`put_writes` (natively on an AsyncStore's PostgreSQL or Redis driver)."""
        lane = self._lane
        if lane is None:
            await self._worker.run(lambda: self.put_writes(config, writes, task_id, task_path))
            return
        ops = self._write_ops(config, writes, task_id, task_path)
        async with lane.turn():
            await arun(lane.backend, new_writes(ops))

    async def adelete_thread(self, thread_id: str) -> None:
        """Async :meth:`delete_thread`."""
        await self._worker.run(lambda: self.delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Async :meth:`delete_for_runs`."""
        await self._worker.run(lambda: self.delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Async :meth:`copy_thread`."""
        await self._worker.run(lambda: self.copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async :meth:`prune`."""
        await self._worker.run(lambda: self.prune(thread_ids, strategy=strategy))

    async def aapply_retention(self, thread_ids: Sequence[str] | None = None, *, checkpoints: int | None = None) -> int:
        """Async :meth:`apply_retention`."""
        return await self._worker.run(lambda: self.apply_retention(thread_ids, checkpoints=checkpoints))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """Async ``get_delta_channel_history`` (LangGraph's ``DeltaChannel``)."""
        return await self._worker.run(lambda: self.get_delta_channel_history(config=config, channels=channels))
