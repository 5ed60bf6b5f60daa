"""The detectors run one by one, gated by literals (security/detectors.py), find what the one
regex of all of them found — checked against that regex, rebuilt here, on the labelled corpora and
on generated text mixing names, separators, tokens and prose.

One difference is allowed, and only that one: the one regex consumed each candidate whole, hiding
any other detector's match that started inside it — also when the exact rules then rejected the
candidate (a run of 32 token characters that is not random, say):
``passwordpasswordpassword-----BEGIN PRIVATE KEY-----`` had no finding. Run one by one, the
detectors find such a secret too; a text refused before is refused still."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statekeel.security import detectors as d
from statekeel.testing.secret_corpus import (
    generated_secrets,
    ordinary_messages,
    ordinary_text,
)

_ONE_REGEX = re.compile("|".join(f"(?P<{k}>{v})" for k, v in d._PATTERNS.items() if k not in d._GATES))


def _reference_matches(text: str) -> Iterator[re.Match[str]]:
    """The matching before: one alternation of the ungated detectors, the gated ones by finditer."""
    yield from _ONE_REGEX.finditer(text)
    lowered = text.lower()
    for words, pattern in d._GATED:
        if any(w in lowered for w in words):
            yield from pattern.finditer(text)


def _reference(text: str) -> list[d.Finding]:
    found: list[d.Finding] = []
    for m in sorted((m for m in _reference_matches(text) if d._keep(m, text)), key=lambda m: m.start()):
        if not found or m.start() >= found[-1].end:
            found.append(d.Finding(m.lastgroup or "secret", m.start(), m.end()))
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    else:
        yield json.dumps(value, default=str)


def test_the_corpora_give_the_same_findings() -> None:
    texts = [t for _, secret in generated_secrets() for t in _strings(secret)]
    texts += ordinary_text(n_docstrings=600, n_chatter=600)
    texts += [t for m in ordinary_messages(n_per_shape=60) for t in _strings(m)]
    assert len(texts) > 3000
    differ = [(t[:200], d.find_secrets(t), _reference(t)) for t in texts if d.find_secrets(t) != _reference(t)]
    assert differ == [], differ[:5]
    assert sum(1 for t in texts if d.find_secrets(t)) > 500  # what is compared: findings, not only empty lists


_PIECES = st.sampled_from([
    "password", "PASSWORD", "db_password", "dbPassword", "passwd", "pwd", "PWD", "secret", "client_secret",
    "myclient_secret", "apiKey", "api-key", "API_KEY", "secret_key", "encryption_key", "access_token",
    "sessionToken", "token", "key", "Bearer ", "bearer", "://", "postgres://u:", "@host/db", "=", ": ", ":=", "=>",
    "\"", "'", "`", " ", "\n", "\t", "_", "-", ".", "/", "sk-", "sk_live_", "ghp_", "xoxb-", "AKIA", "eyJ",
    "hf_", "npm_", "SG.", "glpat-", "-----BEGIN PRIVATE KEY-----", "12345678:AA", "${PW}", "***", "<redacted>",
    "self.password", "os.environ[\"PW\"]", "str", "the one you chose", "hunter2", "s3cr3t!",
])
_TOKENS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=", min_size=1, max_size=48)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(_PIECES, _TOKENS), min_size=1, max_size=14))
def test_generated_text_gives_the_same_findings(parts: list[str]) -> None:
    text = "".join(parts)
    new, old = d.find_secrets(text), _reference(text)
    if new == old:
        return
    assert new or not old, (text, new, old)  # refused before: refused still
    consumed = [m.span() for m in _ONE_REGEX.finditer(text)]
    extra = [f for f in new if f not in old]
    for f in extra:  # each started inside a candidate the one regex consumed
        assert any(a <= f.start < b for a, b in consumed), (text, new, old)
    for f in old:  # and each finding of before is still found, or overlapped by one of those
        assert f in new or any(e.start < f.end and f.start < e.end for e in extra), (text, new, old)


def test_a_secret_inside_a_rejected_candidate_is_found() -> None:
    text = "passwordpasswordpassword-----BEGIN PRIVATE KEY-----"
    assert _reference(text) == []  # before: hidden inside a non-random 34-character "token"
    assert [f.kind for f in d.find_secrets(text)] == ["private_key"]
