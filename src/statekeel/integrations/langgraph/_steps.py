"""Sans-I/O steps: code that decides yields what it needs read or written, drivers do it.

A generator of type ``Steps[T]`` yields :class:`Get`, :class:`GetMany`, :class:`Scan` or
:class:`Apply` and receives its result (or has the :class:`~statekeel.errors.ConflictError` it
raised thrown in), and returns its ``T``. :func:`run` answers the steps with a store's sync
backend (the saver's sync methods, on its worker thread); :func:`arun` with the asyncio driver
of an :class:`~statekeel.aio.AsyncStore` on the event loop. The same code decides both.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple, TypeVar, Union

from ...aio._native import apply_across
from ...core.session_write import apply_across_partitions
from ...errors import ConflictError
from ...protocol import Backend, Op
from ...protocol.aio import AsyncBackend

__all__ = ["Apply", "Get", "GetMany", "Scan", "Steps", "arun", "run"]

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


Steps = Generator[Union[Get, GetMany, Scan, Apply], Any, T]


def run(backend: Backend, steps: Steps[T]) -> T:
    """``steps`` done with the sync backend."""
    result: Any = None
    error: ConflictError | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            if type(step) is Apply:
                result = apply_across_partitions(backend, step.ops)
            elif type(step) is Get:
                result = backend.get(step.key)
            elif type(step) is Scan:
                result = backend.scan(step.prefix, after=step.after, limit=step.limit)
            else:
                assert type(step) is GetMany
                result = backend.get_many(step.keys)
        except ConflictError as exc:
            error = exc


async def arun(backend: AsyncBackend, steps: Steps[T]) -> T:
    """``steps`` done with the asyncio driver (:func:`run`, awaited)."""
    result: Any = None
    error: ConflictError | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            if type(step) is Apply:
                result = await apply_across(backend, step.ops)
            elif type(step) is Get:
                result = await backend.get(step.key)
            elif type(step) is Scan:
                result = await backend.scan(step.prefix, after=step.after, limit=step.limit)
            else:
                assert type(step) is GetMany
                result = await backend.get_many(step.keys)
        except ConflictError as exc:
            error = exc
