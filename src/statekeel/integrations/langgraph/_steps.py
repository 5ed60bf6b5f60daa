"""Sans-I/O steps: code that decides yields what it needs read or written, drivers do it.

A generator of type ``Steps[T]`` yields :class:`Get`, :class:`GetMany`, :class:`Scan` or
:class:`Apply` and receives its result (or has the :class:`~statekeel.errors.ConflictError` it
raised thrown in), and returns its ``T``. :func:`run` answers the steps with a store's sync
backend (the saver's sync methods, on its worker thread); :func:`arun` with the asyncio driver
of an :class:`~statekeel.aio.AsyncStore` on the event loop. The same code decides both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any, NamedTuple, TypeVar

from ...aio._native import apply_across
from ...core.session_write import apply_across_partitions
from ...errors import ConflictError
from ...protocol import Backend, Op
from ...protocol.aio import AsyncBackend

__all__ = ["Apply", "Get", "GetMany", "Out", "Scan", "Steps", "arun", "arun_iter", "run", "run_iter"]

T = TypeVar("T")


class Get(NamedTuple):
    key: str


class GetMany(NamedTuple):
    keys: list[str]


class Scan(NamedTuple):
    prefix: str
    after: str | None
    limit: int


class Apply(NamedTuple):
    ops: list[Op]


class Out(NamedTuple):
    """Not I/O: one item of what the steps produce, handed on by :func:`run_iter`/:func:`arun_iter`."""

    value: Any


Steps = Generator[Get | GetMany | Scan | Apply | Out, Any, T]


def run(backend: Backend, steps: Steps[T]) -> T:
    """``steps`` done with the sync backend; what they return."""
    items = run_iter(backend, steps)
    try:
        next(items)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("these steps produce items: use run_iter")


def run_iter(backend: Backend, steps: Steps[Any]) -> Generator[Any, None, Any]:
    """``steps`` done with the sync backend, the items they produce (:class:`Out`) handed on."""
    result: Any = None
    error: ConflictError | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        result, error = None, None
        if isinstance(step, Out):
            yield step.value
            continue
        try:
            result = _do(backend, step)
        except ConflictError as exc:
            error = exc


def _do(backend: Backend, step: Get | GetMany | Scan | Apply) -> Any:
    if type(step) is Apply:
        return apply_across_partitions(backend, step.ops)
    if type(step) is Get:
        return backend.get(step.key)
    if type(step) is Scan:
        return backend.scan(step.prefix, after=step.after, limit=step.limit)
    assert type(step) is GetMany
    return backend.get_many(step.keys)


async def arun(backend: AsyncBackend, steps: Steps[T]) -> T:
    """``steps`` done with the asyncio driver (:func:`run`, awaited)."""
    result: Any = None
    error: ConflictError | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        assert not isinstance(step, Out), "these steps produce items: use arun_iter"
        result, error = None, None
        try:
            result = await _ado(backend, step)
        except ConflictError as exc:
            error = exc


async def arun_iter(backend: AsyncBackend, steps: Steps[Any]) -> AsyncIterator[Any]:
    """:func:`run_iter` with the asyncio driver."""
    result: Any = None
    error: ConflictError | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration:
            return
        result, error = None, None
        if isinstance(step, Out):
            yield step.value
            continue
        try:
            result = await _ado(backend, step)
        except ConflictError as exc:
            error = exc


async def _ado(backend: AsyncBackend, step: Get | GetMany | Scan | Apply) -> Any:
    if type(step) is Apply:
        return await apply_across(backend, step.ops)
    if type(step) is Get:
        return await backend.get(step.key)
    if type(step) is Scan:
        return await backend.scan(step.prefix, after=step.after, limit=step.limit)
    assert type(step) is GetMany
    return await backend.get_many(step.keys)
