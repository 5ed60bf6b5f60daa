"""Process crash: a child writing through the public API is SIGKILLed at random moments.

After every kill the parent checks that each write the child acknowledged (printed after
the call returned) is stored once, in order and whole, that the store opens, and that
``statekeel doctor``'s checks pass. Each workload is its own scenario:

* ``appends``    — batches of three messages with session state (atomic turns);
* ``sessions``   — session creation (D2: a kill between a session's metadata and its index
  entry left a session no listing showed);
* ``first_open`` — ``statekeel.open`` of a fresh store (files D3: a kill there bricked it);
* ``decide``     — ``session.decide`` blocks, with recovery of the incomplete ones;
* ``runs``       — ``store.run(...).step`` (a memoised step never runs again).

Kills per scenario and backend: see ``KILLS`` — 33 per embedded backend in the short mode (CI,
every ``pytest`` run), 11 per server, at least two per scenario so each has a kill mid-stream and
one at a random moment (see ``Killer``); the long mode (``STATEKEEL_RELIABILITY=long``, by hand:
``python scripts/reliability.py --long``) gives every embedded backend 1,000 and each server 140.
Kill delays are random; the seed is reported.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import statekeel
from statekeel.testing import ServerPool
from statekeel.testing.plugin import selected_backends

from ._crash_checks import Appends, Checker, Decide, FirstOpen, Runs, Sessions, doctor_problems
from ._crash_harness import Killer
from .conftest import Reporter, scale

CRASH_BACKENDS = ("sqlite", "sqlite-normal", "files", "postgres", "redis")
SERVERS = ("postgres", "redis")

# scenario -> (kills per embedded backend: short, long), (per server backend: short, long), max delay (s)
# (short: half the kills it had until session 32 — the loop was 14 % of CI's test time; every
# scenario still runs on every backend, with both kinds of kill, see Killer.kill_one)
KILLS: dict[str, tuple[tuple[int, int], tuple[int, int], float]] = {
    "appends": ((10, 400), (3, 40), 0.15),
    "sessions": ((8, 300), (2, 40), 0.1),
    "first_open": ((5, 100), (2, 20), 0.15),
    "decide": ((5, 100), (2, 20), 0.25),
    "runs": ((5, 100), (2, 20), 0.25),
}
CHECKERS: dict[str, Callable[[str], Checker]] = {
    "appends": lambda url: Appends(),
    "sessions": lambda url: Sessions(),
    "first_open": lambda url: FirstOpen(url),
    "decide": lambda url: Decide(),
    "runs": lambda url: Runs(),
}
SERVER_DELAY_FACTOR = 3
"""Opening a store over the network takes longer: later kills, so most land mid-stream."""
DOCTOR_EVERY = scale(1, 10)
"""Doctor reads the whole store: after every kill in CI, every 10th in the long mode (and at the end)."""
MAX_FOUND = 30
_n = itertools.count()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "crash_backend" in metafunc.fixturenames:
        chosen = selected_backends(metafunc.config)
        metafunc.parametrize("crash_backend", [b for b in CRASH_BACKENDS if b.split("-")[0] in chosen])


def store_url(backend: str, tmp: Path, servers: ServerPool, first_open: bool) -> str:
    """The store the children write to; for ``first_open`` a template with ``{i}`` (a fresh store each)."""
    n = next(_n)
    name = "fo-{i}" if first_open else "store"
    try:
        return {
            "sqlite": lambda: f"sqlite:///{tmp}/{name}.db",
            "sqlite-normal": lambda: f"sqlite:///{tmp}/{name}.db?durability=normal",
            "files": lambda: f"file://{tmp}/{name}",
            "postgres": lambda: f"{servers.postgres().url}?schema=sk_crash_{n}" + ("_{i}" if first_open else ""),
            "redis": lambda: f"{servers.redis().url}?prefix=crash{n}" + ("_{i}" if first_open else ""),
        }[backend]()
    except ServerPool.Missing as exc:
        pytest.skip(str(exc))


def cli_doctor(url: str) -> list[str]:
    """``statekeel doctor URL`` as a user runs it: exit code 0 or what it printed."""
    cli = Path(sys.executable).with_name("statekeel")
    done = subprocess.run([str(cli), "doctor", url], capture_output=True, text=True, check=False)
    return [] if done.returncode == 0 else [f"`statekeel doctor` exited {done.returncode}: {done.stdout[-300:]}"]


def after_kill(checker: Checker, lines: list[str], url: str, doctor: bool) -> list[str]:
    """Everything wrong after one kill: the child's own lines, the stored data, doctor."""
    problems = checker.absorb(lines)
    if isinstance(checker, FirstOpen):
        return problems + checker.check_stores()  # each fresh store is opened and checked itself
    try:
        with statekeel.open(url) as store:
            problems += checker.check(store)
    except statekeel.StatekeelError as exc:
        return [*problems, f"the store does not open after the kill: {exc!r}"]
    return problems + (doctor_problems(url) if doctor else [])


def finish(checker: Checker, url: str) -> list[str]:
    """The checks that change the store (``mark_stale_crashed``), then doctor as a user runs it."""
    if isinstance(checker, FirstOpen):
        return []
    with statekeel.open(url) as store:
        problems = checker.finish(store)
    return problems + cli_doctor(url)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(KILLS))
def test_kill_9_loses_no_acknowledged_write(
    scenario: str, crash_backend: str, tmp_path: Path, statekeel_servers: ServerPool, reliability_report: Reporter
) -> None:
    embedded, server, max_delay = KILLS[scenario]
    kills = scale(*(server if crash_backend in SERVERS else embedded))
    url = store_url(crash_backend, tmp_path, statekeel_servers, first_open=scenario == "first_open")
    checker = CHECKERS[scenario](url)
    killer = Killer(scenario, url, max_delay * (SERVER_DELAY_FACTOR if crash_backend in SERVERS else 1))
    found: dict[str, int] = {}  # each problem once, with the kill that first showed it
    started = time.monotonic()
    try:
        for _ in range(kills):
            lines = killer.kill_one()
            for problem in after_kill(checker, lines, url, doctor=killer.kills % DOCTOR_EVERY == 0):
                found.setdefault(problem, killer.kills)
        for problem in finish(checker, url):
            found.setdefault(problem, killer.kills)
    except Exception as exc:  # a crashed harness or child is a finding too; report it, then fail
        found.setdefault(f"stopped: {exc!r}"[:2000], killer.kills)
    finally:
        killer.close()
    listed = [f"kill {kill}: {problem}" for problem, kill in found.items()]
    reliability_report(
        "process crash", crash_backend, scenario=scenario, kills=killer.kills,
        kills_mid_stream=killer.kills_after_an_ack, acknowledged=checker.acked,
        seconds=round(time.monotonic() - started, 2), seed=killer.seed,
        found=listed[:MAX_FOUND], found_count=len(listed),
    )  # fmt: skip
    assert not listed, "\n".join(listed[:MAX_FOUND])
