"""LangGraph store filters and namespace conditions, with the semantics of LangGraph's own stores.

A filter maps value keys to an expected value (compared like JSONB: nested dicts
and lists element-wise) or to operators ``$eq $ne $gt $gte $lt $lte`` (the
ordering operators compare as numbers). Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

from langgraph.store.base import MatchCondition

from ...errors import InvalidInputError

__all__ = ["matches", "namespace_matches"]

_ORDER = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def matches(value: dict[str, Any], filt: dict[str, Any]) -> bool:
    """Whether an item's value satisfies every clause of ``filt``."""
    return all(_compare(value.get(k), expected) for k, expected in filt.items())


def _compare(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        if any(isinstance(k, str) and k.startswith("$") for k in expected):
            return all(_operator(actual, op, operand) for op, operand in expected.items())
        return isinstance(actual, dict) and all(_compare(actual.get(k), v) for k, v in expected.items())
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(expected)
            and all(_compare(a, e) for a, e in zip(actual, expected))
        )
    return bool(actual == expected)


def _operator(actual: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(actual == operand)
    if op == "$ne":
        return bool(actual != operand)
    if op not in _ORDER:
        raise InvalidInputError(f"unsupported filter operator {op!r}; use $eq, $ne, $gt, $gte, $lt or $lte")
    try:
        return bool(_ORDER[op](float(actual), float(operand)))
    except (TypeError, ValueError, OverflowError):  # not a number, or an int no float holds
        return False


def namespace_matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """A ``prefix``/``suffix`` condition (``*`` matches any label) against a namespace."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path))
    else:
        raise InvalidInputError(f"unsupported namespace match type {condition.match_type!r}; use prefix or suffix")
    return all(p == "*" or n == p for n, p in pairs)
