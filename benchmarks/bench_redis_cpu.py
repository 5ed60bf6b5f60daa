"""Redis CPU per turn (INFO commandstats) of the APPLY script vs the LIGHT one (issues 15 and 17).

The reference turn (a 200-byte user and an 800-byte assistant message plus a state
put) on a plain ``redis://`` store and on a tiered write-behind store, in blocks of
``--block`` turns that alternate between the two scripts (the everyday batch takes
LIGHT; the APPLY blocks force the general script, as before LIGHT existed). Redis'
own accounting (``cmdstat_evalsha`` µs, and every command's µs) is far less noisy
than wall-clock time on a shared machine; wall time per turn is printed beside it.

Last, wall time: LIGHT and APPLY turn by turn on two plain stores, the median per-turn ratio.

    python benchmarks/bench_redis_cpu.py --rounds 5 --block 100 --paired-turns 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import redis  # noqa: E402

import statekeel  # noqa: E402
from statekeel.backends.redis import wire  # noqa: E402
from statekeel.backends.tiered import tiered_url  # noqa: E402
from statekeel.testing.servers import ServerPool  # noqa: E402

_LIGHT = wire.light


def _script(name: str) -> None:
    """Benchmark instrumentation: ``apply`` forces APPLY for every batch (the tests never patch this)."""
    wire.light = _LIGHT if name == "light" else (lambda ops: False)  # type: ignore[assignment]


def _turn(session: Any, i: int) -> None:
    session.append({"role": "user", "content": f"question {i} " + "u" * 180},
                   {"role": "assistant", "content": f"answer {i} " + "a" * 780}, state={"turn": i})  # fmt: skip


def _block(r: redis.Redis, session: Any, start: int, turns: int) -> tuple[float, float, float]:
    """(evalsha µs, all commands' µs, wall ms) per turn over ``turns`` turns."""
    r.config_resetstat()
    t = time.perf_counter()
    for i in range(start, start + turns):
        _turn(session, i)
    wall = (time.perf_counter() - t) / turns * 1e3
    stats = r.info("commandstats")
    every = sum(v["usec"] for k, v in stats.items() if k != "cmdstat_config|resetstat")
    return stats["cmdstat_evalsha"]["usec"] / turns, every / turns, wall


def paired(url: str, turns: int) -> dict[str, float]:
    """Wall time per turn, LIGHT and APPLY turn by turn on two stores (alternating order): the
    median of the per-turn ratios LIGHT / APPLY, which cancels the machine's drift."""
    stores = {s: statekeel.open(f"{url}?prefix=cpu_pair_{s}") for s in ("apply", "light")}
    try:
        sessions = {s: store.session("t1") for s, store in stores.items()}
        lat: dict[str, list[float]] = {"apply": [], "light": []}
        for i in range(-1, turns):
            for script in ("apply", "light") if i % 2 else ("light", "apply"):
                _script(script)
                t = time.perf_counter()
                _turn(sessions[script], i)
                if i >= 0:
                    lat[script].append(time.perf_counter() - t)
        _script("light")
    finally:
        for store in stores.values():
            store.close()
    return {"apply_ms": round(statistics.median(lat["apply"]) * 1e3, 3),
            "light_ms": round(statistics.median(lat["light"]) * 1e3, 3),
            "light / apply": round(statistics.median(a / b for a, b in zip(lat["light"], lat["apply"])), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--paired-turns", type=int, default=1000)
    a = ap.parse_args()
    servers = ServerPool(required=True)
    try:
        rd, pg = servers.redis(), servers.postgres()
        r = redis.Redis(port=rd.port)
        urls = {"redis": f"{rd.url}?prefix=cpu_r",
                "write-behind": tiered_url(f"{rd.url}?prefix=cpu_wb", f"{pg.url}?schema=cpu_wb", mode="write-behind")}
        out: dict[str, Any] = {"load_before": Path("/proc/loadavg").read_text().split()[:3]}
        for name, url in urls.items():
            with statekeel.open(url) as store:
                session = store.session("t1")
                _turn(session, -1)  # the session exists (and, tiered, its partitions are cached)
                rows: dict[str, list[tuple[float, float, float]]] = {"apply": [], "light": []}
                start = 0
                for rnd in range(a.rounds):
                    for script in ("apply", "light") if rnd % 2 == 0 else ("light", "apply"):
                        _script(script)
                        rows[script].append(_block(r, session, start, a.block))
                        start += a.block
                _script("light")
                out[name] = {s: {"evalsha_us": round(statistics.median(x[0] for x in v), 1),
                                 "all_commands_us": round(statistics.median(x[1] for x in v), 1),
                                 "wall_ms": round(statistics.median(x[2] for x in v), 3)}
                             for s, v in rows.items()}  # fmt: skip
        out["paired_wall_redis"] = paired(rd.url, a.paired_turns)
        out["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        servers.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
