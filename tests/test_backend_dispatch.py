"""Every backend picks an op's handler from one table keyed by op type."""

from __future__ import annotations

import typing
from collections.abc import Mapping

import pytest

from statekeel import Store, UsageError
from statekeel.backends.files.txn import _APPLY as FILES
from statekeel.backends.memory import _APPLY as MEMORY
from statekeel.backends.postgres.ops import OPS as POSTGRES
from statekeel.backends.redis.wire import OPS as REDIS
from statekeel.backends.sqlite.writes import APPLY as SQLITE
from statekeel.backends.tenant import _IN_TENANT as TENANT_VIEW
from statekeel.protocol import Op, Put

TABLES: dict[str, Mapping[type[Op], object]] = {
    "memory": MEMORY,
    "sqlite": SQLITE,
    "files": FILES,
    "postgres": POSTGRES,
    "redis": REDIS,
    "tenant view": TENANT_VIEW,
}


@pytest.mark.parametrize("name", TABLES)
def test_every_op_type_has_one_row(name: str) -> None:
    assert set(TABLES[name]) == set(typing.get_args(Op))


class Unknown:
    """Not an op of the protocol."""


def test_an_op_without_a_row_is_refused_and_nothing_is_written(store: Store) -> None:
    for handle in (store, store.tenant("acme")):
        ops = [Put("k/x/a", b"1", "json"), Unknown()]
        with pytest.raises(UsageError, match=r"cannot apply Unknown \(it applies Append, Delete"):
            handle.backend.apply(ops)  # type: ignore[list-item]
        assert handle.backend.get("k/x/a") is None
