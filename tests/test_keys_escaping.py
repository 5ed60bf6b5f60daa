"""Key components: ``escape`` and ``unescape`` (``statekeel/protocol/keys.py``) against the
character-by-character definitions they replaced, on any text — ids full of ``/``, ``%``, braces and
NUL (every ADK session id holds ``/``) and components that are not ``escape``'s output at all."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statekeel.protocol import keys

_ESCAPED = {"%": "%25", "/": "%2F", "{": "%7B", "}": "%7D", "\x00": "%00"}


def _escape_by_char(component: str) -> str:
    return "".join(_ESCAPED.get(ch, ch) for ch in component)


def _unescape_by_char(component: str) -> str:
    """Each "%" and the (at most two) characters after it read as a hex code, left to right."""
    return re.sub("%(.{0,2})", lambda m: chr(int(m.group(1), 16)), component, flags=re.DOTALL)


_text = st.text(st.sampled_from(["%", "/", "{", "}", "\x00", "2", "5", "F", "f", "7", "B", "D", "0", "a", "é"]), min_size=1)


@given(_text | st.text(min_size=1))
def test_escape_is_the_character_mapping_and_unescape_reverses_it(component: str) -> None:
    escaped = keys.escape(component)
    assert escaped == _escape_by_char(component)
    assert "/" not in escaped and "{" not in escaped and "}" not in escaped and "\x00" not in escaped
    assert keys.unescape(escaped) == component


@given(_text)
def test_unescape_of_any_component_decodes_as_the_character_loop_did(component: str) -> None:
    try:
        expected: str | type[ValueError] = _unescape_by_char(component)
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            keys.unescape(component)
    else:
        assert keys.unescape(component) == expected


def test_examples() -> None:
    assert keys.escape("adk/many/user1/s000001") == "adk%2Fmany%2Fuser1%2Fs000001"
    assert keys.escape("%2F") == "%252F" and keys.unescape("%252F") == "%2F"
    assert keys.unescape("a%2fb") == "a/b"  # lower-case hex: not escape's, decoded all the same
    assert keys.split(keys.join("session", "a/b{c}%", "state")) == ["session", "a/b{c}%", "state"]
