"""The protocol's dataclasses built by :func:`statekeel.protocol._slots.quick_init`'s ``__init__``
behave exactly as the dataclass-generated one did: same parameters and defaults, frozen,
equal, hashable, picklable, ``dataclasses.replace`` works, wrong calls raise TypeError."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import Any

import pytest

from statekeel.protocol import (ANY, KEEP, Append, Delete, Entry, Expire, Load, LoadEntries, LogInfo, Put, Record,
                                Rewrite, Touch, Trim)
from statekeel.protocol._slots import quick_init

_RECORD = Record("k", b"v", "json", 1, 1.0, 2.0, None)
_SAMPLES: list[Any] = [
    _RECORD,
    Entry("log", 1, b"x", "json", 1.5),
    LogInfo("log", 1, 2, 1.0, 2.0, None),
    Put("k", b"v", "json"),
    Put("k", b"v", "json", 3, 9.5),
    Delete("k"),
    Append("log", ((b"a", "json"),)),
    Append("log", ((b"a", "json"),), 5.0, 2),
    Touch("k", 4.0),
    Expire("session/", 1.0),
    Trim("log", 3),
    Load(_RECORD),
    LoadEntries("log", (Entry("log", 1, b"x", "json", 1.5),)),
    Rewrite("log", 1, b"y", "json"),
]


@pytest.mark.parametrize("value", _SAMPLES, ids=lambda v: type(v).__name__)
def test_instances_are_the_dataclass_they_were(value: Any) -> None:
    cls = type(value)
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]
    assert cls.__init__.__qualname__ == f"{cls.__name__}.__init__"
    values = {f.name: getattr(value, f.name) for f in fields}
    again = cls(**values)  # by keyword
    assert again == value and hash(again) == hash(value) and again is not value
    assert cls(*values.values()) == value  # by position
    assert pickle.loads(pickle.dumps(value)) == value
    assert repr(value).startswith(f"{cls.__name__}(")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, fields[0].name, getattr(value, fields[0].name))
    assert not hasattr(value, "__dict__")  # still slotted
    with pytest.raises(TypeError):
        cls()
    with pytest.raises(TypeError):
        cls(*values.values(), "one too many")
    with pytest.raises(TypeError):
        cls(**values, unknown=1)


def test_defaults_and_replace() -> None:
    put = Put("k", b"v", "json")
    assert put.expect is ANY and put.expires_at is None
    assert dataclasses.replace(put, expect=2) == Put("k", b"v", "json", 2)
    assert Append("log", ()).expires_at is KEEP and Append("log", ()).at is None
    entry = Entry("log", 1, b"x", "json", 1.5)
    assert dataclasses.replace(entry, seq=2).seq == 2 and entry.seq == 1


def test_only_plain_slotted_dataclasses_are_taken() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int = dataclasses.field(kw_only=True)

    for cls in (Unslotted, Factory, KeywordOnly):
        with pytest.raises(TypeError, match="quick_init"):
            quick_init(cls)
