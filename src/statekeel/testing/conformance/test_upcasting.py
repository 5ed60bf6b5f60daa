"""Payload schema evolution: versioned records are upcast on read (tolerant reader) on every backend.

The example type evolves v1 -> v2 -> v3:

* v1 ``{"id", "state"}``;
* v2 added ``priority`` (default 0);
* v3 renamed ``state`` to ``status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pydantic
import pytest

import statekeel
from statekeel import InvalidInputError, SchemaVersionError, Store, StoreError, versioned
from statekeel.features import upcasting
from statekeel.features.state import Scope


@statekeel.schema("ConfTicket", version=3)
@dataclass
class Ticket:
    id: int
    status: str = "open"
    priority: int = 0
    tags: list[str] = field(default_factory=list)


def _v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "priority": d.get("priority", 0)}


def _v2_to_v3(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k != "state"}
    out["status"] = d.get("state", "open")
    return out


statekeel.register_upcaster("ConfTicket", 1, _v1_to_v2)
statekeel.register_upcaster("ConfTicket", 2, _v2_to_v3)


@statekeel.schema("ConfProfile", version=2)
class Profile(pydantic.BaseModel):
    name: str
    language: str = "en"


statekeel.register_upcaster("ConfProfile", 1, lambda d: {"name": d["full_name"], **{k: v for k, v in d.items() if k != "full_name"}})
statekeel.register_upcaster("ConfDict", 1, lambda d: {**d, "added": True})


def _raw(store: Store, key: str) -> bytes:
    rec = store.backend.get(Scope("app", "_").prefix + key)
    assert rec is not None
    return rec.data


def test_upcast_v1_and_v2_records_to_the_current_class(store: Store) -> None:
    store.app.put("t1", versioned({"id": 1, "state": "closed"}, "ConfTicket", 1))
    store.app.put("t2", versioned({"id": 2, "state": "pending", "priority": 5}, "ConfTicket", 2))
    assert store.app.get("t1") == Ticket(1, "closed", 0)
    assert store.app.get("t2") == Ticket(2, "pending", 5)


def test_upcast_current_version_round_trips_and_is_recorded(store: Store) -> None:
    store.app.put("t", versioned(Ticket(3, "open", 1, ["vip"])))
    assert b'"version":3' in _raw(store, "t") and b"ConfTicket" in _raw(store, "t")
    assert store.app.get("t") == Ticket(3, "open", 1, ["vip"])


def test_upcast_tolerant_reader_defaults_and_unknown_fields(store: Store) -> None:
    store.app.put("t", versioned({"id": 4, "state": "x", "legacy_note": "keep me"}, "ConfTicket", 1))
    ticket = store.app.get("t")
    assert ticket == Ticket(4, "x", 0, [])  # missing fields got their defaults
    assert getattr(ticket, upcasting.EXTRA_ATTR) == {"legacy_note": "keep me"}
    store.app.put("t", versioned(ticket))  # written back: the unknown field is still there
    assert b"keep me" in _raw(store, "t")
    assert getattr(store.app.get("t"), upcasting.EXTRA_ATTR) == {"legacy_note": "keep me"}


def test_upcast_newer_record_raises_a_typed_error_and_keeps_the_data(store: Store) -> None:
    store.app.put("t", versioned({"id": 5, "status": "open", "sla": "gold"}, "ConfTicket", 4))
    with pytest.raises(SchemaVersionError) as info:
        store.app.get("t")
    assert isinstance(info.value, StoreError) and (info.value.stored, info.value.known) == (4, 3)
    assert "version 4" in str(info.value) and "ConfTicket" in str(info.value)
    assert b"gold" in _raw(store, "t")  # nothing was lost


def test_upcast_pydantic_model(store: Store) -> None:
    store.app.put("p1", versioned({"full_name": "Ada"}, "ConfProfile", 1))
    store.app.put("p2", versioned(Profile(name="Grace", language="fr")))
    assert store.app.get("p1") == Profile(name="Ada")
    assert store.app.get("p2") == Profile(name="Grace", language="fr")


def test_upcast_plain_dicts_and_values_inside_other_values(store: Store) -> None:
    s = store.session("schema-in-history")
    s.append({"ticket": versioned({"id": 6, "state": "new"}, "ConfTicket", 1)})
    s.state.put("many", [versioned({"a": 1}, "ConfDict", 1), versioned({"a": 2}, "ConfDict", 2)])
    assert s.history() == [{"ticket": Ticket(6, "new")}]
    assert s.state.get("many") == [{"a": 1, "added": True}, {"a": 2}]
    store.app.put("unknown", versioned({"x": 1}, "NeverRegistered", 7))
    assert store.app.get("unknown") == {"x": 1}  # nothing known about the type: the payload as written


def test_upcast_checkpoints_keep_schema_versions(store: Store) -> None:
    s = store.session("schema-cp")
    s.state.put("t", versioned({"id": 7, "state": "old"}, "ConfTicket", 1))
    cp = s.checkpoint()
    s.state.put("t", "replaced")
    s.restore(cp)
    assert s.state.get("t") == Ticket(7, "old")


def test_upcast_events_of_a_decorated_class(store: Store) -> None:
    e = store.events("schema-events").append("ticket_opened", Ticket(8, "open"))
    assert e.data == Ticket(8, "open")
    assert store.events("schema-events").read()[0].data == Ticket(8, "open")


def test_upcast_errors_are_clear(store: Store) -> None:
    store.app.put("gap", versioned({"v": 1}, "ConfGap", 1))
    statekeel.register_upcaster("ConfGap", 2, lambda d: d)  # nothing from 1 to 2
    with pytest.raises(StoreError, match="no upcaster from version 1"):
        store.app.get("gap")
    statekeel.register_upcaster("ConfBoom", 1, lambda d: d["missing"])
    store.app.put("boom", versioned({}, "ConfBoom", 1))
    with pytest.raises(StoreError, match="upcaster of 'ConfBoom' from version 1 failed"):
        store.app.get("boom")
    with pytest.raises(InvalidInputError, match="type name"):
        versioned({"a": 1})
    with pytest.raises(InvalidInputError):
        versioned({"a": 1}, "NoVersionKnown")
    with pytest.raises(InvalidInputError):
        statekeel.register_upcaster("ConfTicket", 0, lambda d: d)
    with pytest.raises(statekeel.ConfigurationError, match="current version is 3"):
        statekeel.register_upcaster("ConfTicket", 3, lambda d: d)
    with pytest.raises(InvalidInputError, match="dataclass or a pydantic model"):
        statekeel.schema("ConfNotAClass", version=1)(int)
