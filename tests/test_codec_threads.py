"""One codec serves every thread of a store, so its transforms must be safe to share.

zstandard's compressor and decompressor objects are not thread-safe: used from
several threads at once they corrupt frames (seen as ``CorruptionError`` on
read, or wrong bytes). The codec gives each thread its own pair.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import statekeel
from statekeel.codec import Codec

from concurrency import in_threads

THREADS = 4
ROUNDS = 300


def _values(seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "épsilon", "ζeta", "🌍"]
    return [
        {"n": i, "seed": seed, "text": " ".join(rng.choice(words) for _ in range(rng.randint(200, 2000)))}
        for i in range(ROUNDS)
    ]


@pytest.mark.parametrize("compress", ["zstd", "zlib"])
def test_one_codec_used_by_several_threads_round_trips_every_value(compress: str) -> None:
    codec = Codec().compressing(compress, min_bytes=64)

    def work(seed: int) -> None:
        for value in _values(seed):
            data, name = codec.encode(value, "v", "ctx")
            assert name.endswith("+" + compress)
            assert codec.decode(data, name, "ctx") == value

    in_threads(work, THREADS)


def test_a_zstd_store_written_and_read_from_several_threads(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path / 'z.db'}", compress="zstd")
    try:

        def work(seed: int) -> None:
            state = store.session(f"s{seed}").state
            for value in _values(seed)[:60]:
                state["doc"] = value
                assert state["doc"] == value

        in_threads(work, THREADS)
        for seed in range(THREADS):
            assert store.session(f"s{seed}").state["doc"] == _values(seed)[59]
    finally:
        store.close()
