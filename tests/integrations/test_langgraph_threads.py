"""One saver serves every thread of a program (LangGraph writes from its own threads), so what it
keeps for compression must be safe to share.

zstandard's compressor and decompressor objects are not thread-safe: used from several threads at
once they corrupt frames. The saver's values are zstd-compressed (:func:`._records.pack`) by
objects that no two threads use at once.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import statekeel
from statekeel.integrations.langgraph import StatekeelSaver
from statekeel.integrations.langgraph._records import pack, unpack

from concurrency import in_threads

from .graphs import chat_graph, user_turn

THREADS = 4


def _payload(rng: random.Random) -> bytes:
    words = [b"alpha", b"beta", b"gamma", b"\xce\xb6eta", bytes(rng.getrandbits(8) for _ in range(8))]
    return b" ".join(rng.choice(words) for _ in range(rng.randint(100, 3000)))


def test_values_packed_and_unpacked_by_several_threads_at_once_round_trip() -> None:
    def work(n: int) -> None:
        rng = random.Random(n)
        for _ in range(400):
            data = _payload(rng)
            doc = pack(("msgpack", data))
            assert doc["z"] == 2 and unpack(doc) == ("msgpack", data)

    in_threads(work, THREADS)


def test_one_saver_used_by_several_threads_keeps_every_thread_exact(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path / 'lg.db'}")
    try:
        saver = StatekeelSaver(store)
        graph = chat_graph(saver)
        seen: dict[int, Any] = {}

        def work(n: int) -> None:
            config = {"configurable": {"thread_id": f"t{n}"}}
            for i in range(15):
                graph.invoke(user_turn(100 * n + i), config)
            seen[n] = graph.get_state(config).values

        in_threads(work, THREADS)
        for n in range(THREADS):
            values = chat_graph(StatekeelSaver(store)).get_state({"configurable": {"thread_id": f"t{n}"}}).values
            assert values == seen[n] and len(values["messages"]) == 30 and values["turns"] == 15
            assert values["messages"][0].content.startswith(f"question {100 * n} ")
    finally:
        store.close()
