"""AES-GCM nonces: a per-process random prefix and a counter (see ``encryption.NonceSource``).

A nonce must never repeat under one key: not across values, not across threads, not after the
counter wraps, and not in a forked child (which inherits its parent's counter).
"""

from __future__ import annotations

import os
import threading

import pytest

from statekeel.core import encryption
from statekeel.core.encryption import NonceSource


def test_nonces_are_twelve_bytes_and_never_repeat_across_threads() -> None:
    source = NonceSource()
    seen: list[list[bytes]] = [[] for _ in range(4)]

    def draw(out: list[bytes]) -> None:
        out.extend(source.next() for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [n for out in seen for n in out]
    assert all(len(n) == 12 for n in every)
    assert len(set(every)) == len(every) == 20_000


def test_a_wrapping_counter_draws_a_new_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encryption, "_COUNTER_END", 3)
    source = NonceSource()
    drawn = [source.next() for _ in range(7)]
    assert len(set(drawn)) == 7
    assert len({n[:8] for n in drawn}) == 3  # 3 per prefix, then a new one
    assert {n[8:] for n in drawn} == {(i).to_bytes(4, "big") for i in range(3)}


def test_a_forked_child_does_not_reuse_its_parents_nonces() -> None:
    encryption.nonces.next()  # the parent has counted
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next nonce and leave at once
        try:
            os.write(write, encryption.nonces.next())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 12)
    os.close(read)
    os.waitpid(pid, 0)
    parent = encryption.nonces.next()
    assert len(child) == 12 and child[:8] != parent[:8]
