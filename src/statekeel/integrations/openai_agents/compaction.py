"""``StatekeelCompactionSession``: the SDK's compaction session, routed to the run's tenant.

    session = StatekeelCompactionSession(
        "chat-42", StatekeelSession("chat-42", store, tenant_of=lambda w: w.context["tenant"]))
    await Runner.run(agent, "hi", session=session, context={"tenant": "acme"})

The SDK's ``OpenAIResponsesCompactionSession`` takes no run wrapper on its history
methods, so the Runner gives it none and calls reach the session beneath without one:
with ``tenant_of`` they would all go to the store itself. This subclass takes the wrapper
on every history method and on ``run_compaction``, notes the tenant for the caller's task
(:meth:`StatekeelSession._route`) and calls the SDK's own method, whose calls beneath —
the history read, the ``_atomic_replace_items`` hook — then reach that tenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents.memory import OpenAIResponsesCompactionSession

from ...errors import InvalidInputError
from .session import StatekeelSession

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory.session import OpenAIResponsesCompactionArgs
    from agents.run_context import RunContextWrapper

__all__ = ["StatekeelCompactionSession"]


class StatekeelCompactionSession(OpenAIResponsesCompactionSession):
    """``OpenAIResponsesCompactionSession`` over a :class:`StatekeelSession`, tenant-routed."""

    def __init__(self, session_id: str, underlying_session: StatekeelSession, **options: Any) -> None:
        if not isinstance(underlying_session, StatekeelSession):
            raise InvalidInputError(
                f"underlying_session must be a StatekeelSession, got {type(underlying_session).__name__}; "
                "use the SDK's OpenAIResponsesCompactionSession for other sessions"
            )
        super().__init__(session_id, underlying_session, **options)
        self._statekeel = underlying_session

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        self._statekeel._route(wrapper)
        return await super().get_items(limit)

    async def add_items(self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        self._statekeel._route(wrapper)
        await super().add_items(items)

    async def pop_item(self, *, wrapper: RunContextWrapper[Any] | None = None) -> TResponseInputItem | None:
        self._statekeel._route(wrapper)
        return await super().pop_item()

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        self._statekeel._route(wrapper)
        await super().clear_session()

    async def run_compaction(
        self, args: OpenAIResponsesCompactionArgs | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        self._statekeel._route(wrapper)
        await super().run_compaction(args, wrapper=wrapper)
