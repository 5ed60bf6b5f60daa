"""One codec serves every thread of a store, so its transforms must be safe to share.

zstandard's compressor and decompressor objects are not thread-safe: used from
several threads at once they corrupt frames (seen as ``CorruptionError`` on
read, or wrong bytes). The codec gives each thread its own pair.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import statekeel
from statekeel.codec import Codec

THREADS = 4
ROUNDS = 300


def _values(seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "ζeta", "🌍"]
    return [
        {"n": i, "seed": seed, "text": " ".join(rng.choice(words) for _ in range(rng.randint(200, 2000)))}
        for i in range(ROUNDS)
    ]


def _in_threads(work: Callable[[int], None]) -> None:
    """``work(seed)`` in THREADS threads started together; any failure is raised here."""
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(seed: int) -> None:
        try:
            start.wait()
            work(seed)
        except BaseException as exc:  # collected and re-raised in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize("compress", ["zstd", "zlib"])
def test_one_codec_used_by_several_threads_round_trips_every_value(compress: str) -> None:
    codec = Codec().compressing(compress, min_bytes=64)

    def work(seed: int) -> None:
        for value in _values(seed):
            data, name = codec.encode(value, "v", "ctx")
            assert name.endswith("+" + compress)
            assert codec.decode(data, name, "ctx") == value

    _in_threads(work)


def test_a_zstd_store_written_and_read_from_several_threads(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path / 'z.db'}", compress="zstd")
    try:

        def work(seed: int) -> None:
            state = store.session(f"s{seed}").state
            for value in _values(seed)[:60]:
                state["doc"] = value
                assert state["doc"] == value

        _in_threads(work)
        for seed in range(THREADS):
            assert store.session(f"s{seed}").state["doc"] == _values(seed)[59]
    finally:
        store.close()
