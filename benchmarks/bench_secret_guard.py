"""Secret guard: recall on generated credentials, false positives on ordinary messages, cost per message.

    python benchmarks/bench_secret_guard.py

Two costs per message, guard off and on: ``prose`` is the 800-byte assistant message of
the per-turn workload (the common case: the fast RE2 scan finds nothing); ``ordinary``
cycles through the labelled ordinary messages (docstrings, chatter, base64 payloads,
hex ids, UUIDs, cursors…), many of which take the exact path before being cleared.
"""

from __future__ import annotations

import json
import random
import string
import time
from typing import Any

from statekeel.codec import Codec
from statekeel.security.guard import SecretGuard
from statekeel.testing.secret_corpus import measure, ordinary_messages


def _cost_us(codec: Codec, messages: list[Any], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        m = messages[i % len(messages)]
        codec.encode({"role": "assistant", "content": m} if isinstance(m, str) else m, "m", "session/t/history")
    return (time.perf_counter() - started) / n * 1e6


def cost_per_message(n: int = 20000) -> dict[str, float]:
    rnd = random.Random(7)
    prose = ["".join(rnd.choice(string.ascii_letters + "     ") for _ in range(800)) for _ in range(200)]
    ordinary = ordinary_messages()
    out: dict[str, float] = {}
    for corpus, messages in (("prose", prose), ("ordinary", ordinary)):
        for name, codec in (("guard_off", Codec()), ("guard_on", Codec(guard=SecretGuard()))):
            out[f"encode_us_{corpus}_{name}"] = round(_cost_us(codec, messages, n), 2)
    return out


if __name__ == "__main__":
    print(json.dumps({"system": "secret-guard", **measure(), **cost_per_message()}))
