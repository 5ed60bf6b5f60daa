"""Values round-trip exactly through every backend; bad values are refused cleanly."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeel
from statekeel import RecordTooLargeError, SerializationError, Store


@dataclasses.dataclass(frozen=True)
class Ticket:
    id: int
    opened: dt.datetime
    tags: tuple[str, ...] = ()


class Color(enum.Enum):
    RED = "red"


try:
    import pydantic

    class Order(pydantic.BaseModel):
        id: int
        amount: Decimal

    HAVE_PYDANTIC = True
except ModuleNotFoundError:  # pragma: no cover
    HAVE_PYDANTIC = False

EXOTIC: dict[str, Any] = {
    "datetime": dt.datetime(2026, 11, 21, 9, 30, 1, 123456, tzinfo=dt.timezone.utc),
    "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
    "date": dt.date(2026, 11, 21),
    "time": dt.time(23, 59, 1),
    "delta": dt.timedelta(days=2, seconds=5, microseconds=7),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": Decimal("1.10"),
    "bytes": b"\x00\xffbinary",
    "tuple": (1, "two", (3,)),
    "set": {1, 2, 3},
    "frozen": frozenset({"a"}),
    "nan-free": [float("inf"), -float("inf"), 1.5],
    "enum": Color.RED,
    "dataclass": Ticket(991, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), ("late",)),
    "tagged-looking": {"$sk": "datetime", "v": "not a date"},
    "unicode": "naïve 日本 \u2028 \x00",
    "big-int": 2**70,
}


def test_exotic_values_round_trip(store: Store) -> None:
    store.app.put("v", EXOTIC)
    assert store.app.get("v") == EXOTIC
    s = store.session("s")
    s.append(EXOTIC)
    assert s.history() == [EXOTIC]


@pytest.mark.skipif(not HAVE_PYDANTIC, reason="pydantic not installed")
def test_pydantic_models_round_trip(store: Store) -> None:
    order = Order(id=1, amount=Decimal("9.99"))
    store.app.put("order", order)
    got = store.app.get("order")
    assert isinstance(got, Order) and got == order


def test_nan_round_trips(store: Store) -> None:
    store.app.put("nan", float("nan"))
    value = store.app.get("nan")
    assert value != value


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"items": [1, 2, 3, object()]}, "app['ticket']['items'][3]"),
        ({"a": {1: "int key"}}, "app['ticket']['a']"),
        ({"f": lambda: None}, "app['ticket']['f']"),
    ],
)
def test_unserialisable_values_name_the_path(store: Store, value: Any, path: str) -> None:
    store.app.put("ticket", "before")
    with pytest.raises(SerializationError) as info:
        store.app.put("ticket", value)
    assert info.value.path == path and path in str(info.value)
    assert store.app.get("ticket") == "before"


def test_circular_values_are_refused(store: Store) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="itself"):
        store.app.put("loop", loop)


def test_local_classes_are_refused(store: Store) -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match="module level"):
        store.app.put("local", Local(1))


def test_oversize_values_are_refused(store_url: str) -> None:
    with statekeel.open(store_url, max_record_bytes=1000) as s:
        s.app.put("k", "small")
        with pytest.raises(RecordTooLargeError, match="max_record_bytes") as info:
            s.app.put("k", "x" * 5000)
        assert info.value.size > 1000
        with pytest.raises(RecordTooLargeError):
            s.session("t").append("y" * 5000)
        assert s.app.get("k") == "small" and len(s.session("t")) == 0


def test_compressed_values_round_trip_and_stay_readable(store_url: str) -> None:
    text = "compressible " * 500
    with statekeel.open(store_url, compress="zlib") as s:
        s.app.put("big", text)
        rec = s.backend.get(s.app._full_key("big"))
        assert rec is not None and rec.codec.endswith("+zlib") and len(rec.data) < len(text) // 5
    with statekeel.open(store_url) as plain:  # reading needs no compression setting
        assert plain.app.get("big") == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
extended = json_values | st.datetimes() | st.uuids() | st.binary(max_size=32) | st.decimals(allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=extended)
def test_hypothesis_round_trip(store: Store, value: Any) -> None:
    store.app.put("v", value)
    assert store.app.get("v") == value



def test_plain_messages_take_the_form_the_backend_asks_for(store: Store, backend_name: str) -> None:
    """A backend that asks for the short form (:attr:`~statekeel.protocol.Backend.short_messages`)
    gets plain chat messages as ``msg:<role>``, any other as JSON, and both read back equal. The
    built-in backends that keep values as bytes all ask for it — a tiered store and DynamoDB too,
    whose messages used to stay JSON and so paid a JSON encode per message."""
    short = store.storage.short_messages
    if backend_name in ("memory", "files", "sqlite", "postgres", "redis", "dynamodb", "tiered", "tiered-wb"):
        assert short is (backend_name not in ("memory", "files"))
    want = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi", "n": 1}]
    session = store.session("short")
    session.append(*want)
    assert session.history() == want
    if store.backend is store.storage:  # plain (encryption and the chain name their own steps)
        log = store.storage.scan_logs("session/short/")[0].log
        assert [e.codec for e in store.storage.read(log)] == ["msg:user" if short else "json", "json"]
