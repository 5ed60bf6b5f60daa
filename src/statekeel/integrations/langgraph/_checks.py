"""Checks of LangGraph store operations before a batch reads or writes anything.

LangGraph checks namespace labels (``validate_op_namespace``); the rest of an op is typed but
not checked, so a wrong type would otherwise be coerced (a key ``None`` stored as ``"None"``,
a str namespace split into one label per character), stored (a NaN TTL) or fail as a raw
``TypeError``. Bad namespaces raise LangGraph's own :class:`InvalidNamespaceError`, the rest
statekeel's :class:`InvalidInputError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    Op,
    PutOp,
    SearchOp,
)

from ...core.validate import MAX_DURATION, MAX_INT, check_text, short_repr
from ...errors import InvalidInputError

__all__ = ["check_op"]

_MAX_TTL_MINUTES = MAX_DURATION / 60


def check_op(op: Op) -> None:
    """InvalidNamespaceError / InvalidInputError for an op no LangGraph store could run as meant."""
    if isinstance(op, (GetOp, PutOp)):
        _namespace(op.namespace)
        _key(op.key)
    if isinstance(op, PutOp):
        if op.value is not None and not isinstance(op.value, Mapping):
            raise InvalidInputError(f"a store item's value is a dict (None deletes it), got {type(op.value).__name__}")
        _ttl(op.ttl)
    elif isinstance(op, SearchOp):
        _namespace(op.namespace_prefix, prefix=True)
        if op.query is not None:
            check_text(op.query, "query")
        if op.filter is not None and not isinstance(op.filter, Mapping):
            raise InvalidInputError(f"filter is a dict of value keys to conditions, got {type(op.filter).__name__}")
        _count(op.limit, "limit")
        _count(op.offset, "offset")
    elif isinstance(op, ListNamespacesOp):
        for condition in op.match_conditions or ():
            _namespace(condition.path, prefix=True)
        if op.max_depth is not None:
            _count(op.max_depth, "max_depth", minimum=1)
        _count(op.limit, "limit")
        _count(op.offset, "offset")


def _namespace(namespace: Any, *, prefix: bool = False) -> None:
    if not isinstance(namespace, (tuple, list)):
        raise InvalidNamespaceError(
            f"a namespace is a tuple of labels, e.g. ('users', 'u-7'), got {type(namespace).__name__}"
        )
    for label in namespace:  # LangGraph checked each is a non-empty str without '.'
        if isinstance(label, str) and not _utf8(label):
            raise InvalidNamespaceError("a namespace label holds a lone surrogate, which cannot be stored as UTF-8")
    if not namespace and not prefix:
        raise InvalidNamespaceError("Namespace cannot be empty.")


def _key(key: Any) -> None:
    if type(key) is not str:
        raise InvalidInputError(f"a store item's key is a str, got {type(key).__name__}; convert it with str() first")
    if not _utf8(key):
        raise InvalidInputError("a store item's key holds a lone surrogate, which cannot be stored as UTF-8")


def _ttl(ttl: Any) -> None:
    """``ttl`` in minutes: None (never expires) or a number above 0 and at most 100 years (NaN fails)."""
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= _MAX_TTL_MINUTES:
        raise InvalidInputError(
            f"ttl is minutes above 0 and at most 100 years (or None: never expires), got {short_repr(ttl)}; "
            "nothing was written"
        )


def _count(value: Any, what: str, *, minimum: int = 0) -> None:
    if type(value) is not int or not minimum <= value <= MAX_INT:
        raise InvalidInputError(f"{what} must be an int from {minimum} to 2**63 - 1, got {type(value).__name__}")


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
