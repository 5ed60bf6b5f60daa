"""Secret guard: recall on generated credentials, false positives on ordinary text, cost per record.

    python benchmarks/bench_secret_guard.py
"""

from __future__ import annotations

import json
import random
import string
import time

from statekeel.codec import Codec
from statekeel.testing.secret_corpus import measure
from statekeel.security.guard import SecretGuard


def cost_per_message(n: int = 20000) -> dict[str, float]:
    rnd = random.Random(7)
    texts = ["".join(rnd.choice(string.ascii_letters + "     ") for _ in range(800)) for _ in range(200)]
    out = {}
    for name, codec in (("guard_off", Codec()), ("guard_on", Codec(guard=SecretGuard()))):
        started = time.perf_counter()
        for i in range(n):
            codec.encode({"role": "assistant", "content": texts[i % 200]}, "m", "session/t/history")
        out[name] = (time.perf_counter() - started) / n * 1e6
    return {"encode_us_guard_off": round(out["guard_off"], 2), "encode_us_guard_on": round(out["guard_on"], 2)}


if __name__ == "__main__":
    print(json.dumps({"system": "secret-guard", **measure(), **cost_per_message()}))
