"""AsyncDecisionContext: the asyncio twin of ``with session.decide(...) as d:``."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

from ..errors import UsageError
from ..features.decisions import Decision, DecisionContext
from ._generated import _DecisionContextForwards
from ._worker import Worker

__all__ = ["AsyncDecisionContext"]


class AsyncDecisionContext(_DecisionContextForwards):
    """``async with session.decide(...) as d:`` — written durably before the block runs.

    Entering writes the decision (write-ahead) on the store's worker; the block
    runs on the event loop; leaving records its outcome (or the exception).
    ``await d.outcome(value)`` is generated into ``_DecisionContextForwards``.
    """

    def __init__(self, context: DecisionContext, worker: Worker) -> None:
        self._context = context
        self._worker = worker

    def __repr__(self) -> str:
        return f"<AsyncDecisionContext {self.id!r}>"

    @property
    def id(self) -> str:
        """The decision's id (known before the block runs)."""
        return self._context.id

    @property
    def decision(self) -> Decision:
        """The decision as recorded before the block ran (status ``pending``)."""
        return self._context.decision

    @property
    def result(self) -> Decision | None:
        """After the block: the decision with its recorded outcome."""
        return self._context.result

    async def __aenter__(self) -> AsyncDecisionContext:
        await self._worker.run(self._context.__enter__)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._worker.run(lambda: self._context.__exit__(exc_type, exc, tb))

    if not TYPE_CHECKING:  # at runtime only, so that type checkers flag the misuse instead

        def __enter__(self) -> NoReturn:
            raise UsageError("in async code a decision is recorded with `async with session.decide(...) as d:`")

        def __exit__(self, *exc: object) -> None:
            return None
