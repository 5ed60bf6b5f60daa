"""What a closed backend holds in place of its connection, client or lock.

Some drivers quietly reconnect when used after ``close()`` (redis-py, boto3) and
the memory backend has nothing to close, so a thread left running under a
forgotten block (a decide block's heartbeat) would go on writing into a store its
owner closed. Swapping the handle for :class:`Closed` refuses every later use
with :class:`~statekeel.errors.StoreClosedError`, whatever the call.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, NoReturn, cast

from ..errors import StoreClosedError


class Closed:
    """Any attribute, call or ``with`` on it raises :class:`StoreClosedError`."""

    def __init__(self, where: str, opener: str = "statekeel.open()") -> None:
        self._error = StoreClosedError.of(where, opener)

    def _refuse(self) -> NoReturn:
        raise StoreClosedError(*self._error.args)

    def __getattr__(self, name: str) -> Any:
        self._refuse()

    def __enter__(self) -> NoReturn:
        self._refuse()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


def release(handle: Any, *ignore: type[BaseException]) -> None:
    """Close a handle a backend just swapped for :func:`closed`, unless it already was the sentinel
    (a second ``close()``); the ``ignore``d errors of a connection already broken are swallowed."""
    if isinstance(handle, Closed):
        return
    try:
        handle.close()
    except ignore:
        pass


def closed(where: str, opener: str = "statekeel.open()") -> Any:
    """A :class:`Closed` typed as whatever handle it replaces (assign it to ``self._client``)."""
    return cast(Any, Closed(where, opener))
