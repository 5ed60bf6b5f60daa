"""Server crash: the database server dies under load; no acknowledged write may be lost.

A child process (``_child.py appends``) writes numbered batches to a private server and
acknowledges each after the call returned; it retries through the outage on
``UnavailableError``. The parent crashes the server at random moments — PostgreSQL with
``pg_ctl stop -m immediate`` and with SIGKILL of every server process, alternately;
``redis-server`` with SIGKILL — restarts it on the same data and waits until the child
writes again. At the end every acknowledged batch must be stored once, whole, in order.

``appendfsync always`` (the default) and PostgreSQL's ``synchronous_commit = on`` must
lose nothing. Redis ``appendfsync everysec`` is measured, not asserted: how many
acknowledged writes each kill lost and over what window before the kill.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import statekeel
from conftest import start_server
from statekeel.testing.plugin import selected_backends
from statekeel.testing.servers import PostgresServer, RedisServer

from ._crash_checks import Appends, doctor_problems
from ._crash_harness import Child
from .conftest import Reporter, scale

PROGRESS_TIMEOUT = 120.0
"""Seconds the child may take to write again after a restart (a liveness bound, not a measurement)."""

SETUPS: dict[str, tuple[str, list[str]]] = {
    # name: (server, extra redis-server arguments)
    "postgres": ("postgres", []),
    "redis": ("redis", []),
    "redis-everysec": ("redis", ["--appendfsync", "everysec"]),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "setup" in metafunc.fixturenames:
        chosen = selected_backends(metafunc.config)
        metafunc.parametrize("setup", [name for name, (srv, _) in SETUPS.items() if srv in chosen])


@dataclass
class Crash:
    """One crash of the server: how, when it was dead, when it was back."""

    how: str
    killed_at: float
    back_at: float


class Target:
    """A private server the test may crash, and the URL of the store on it."""

    def __init__(self, setup: str) -> None:
        kind, extra = SETUPS[setup]
        self.kind = kind
        self.server: PostgresServer | RedisServer = PostgresServer() if kind == "postgres" else RedisServer(
            extra_args=extra
        )
        self._turn = 0

    @property
    def url(self) -> str:
        return self.server.url + ("?schema=sk_server_crash" if self.kind == "postgres" else "?prefix=crash")

    def crash(self) -> str:
        """Crash the server once; PostgreSQL alternates an immediate stop and SIGKILL."""
        self._turn += 1
        server = self.server
        if isinstance(server, PostgresServer) and self._turn % 2:
            server.stop_immediate()
            return "pg_ctl stop -m immediate"
        server.kill()
        return "SIGKILL"


@pytest.fixture
def target(setup: str) -> Iterator[Target]:
    made = Target(setup)
    start_server(made.server)
    yield made
    made.server.stop()


def acked_after(child: Child, since: float) -> bool:
    """Whether the child acknowledged a write at or after ``since`` (wall clock)."""
    return any(line.startswith("ack") and float(line.split()[3]) >= since for line in list(child.lines))


def wait_for_writes(child: Child, since: float) -> None:
    """Block until the child writes again after ``since``; raise if it died or never does."""
    deadline = time.monotonic() + PROGRESS_TIMEOUT
    while not acked_after(child, since):
        if child.proc.poll() is not None:
            raise RuntimeError(f"the writer died: {child.stderr()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the writer did not write within {PROGRESS_TIMEOUT:g} s of the restart")
        time.sleep(0.01)


def crash_under_load(target: Target, child: Child, kills: int, rng: random.Random) -> list[Crash]:
    """Crash and restart the server ``kills`` times while the child writes."""
    crashes = []
    wait_for_writes(child, 0.0)
    for _ in range(kills):
        time.sleep(rng.uniform(0.05, 0.4))
        how = target.crash()
        killed_at = time.time()
        target.server.start()
        crashes.append(Crash(how, killed_at, time.time()))
        wait_for_writes(child, crashes[-1].back_at)
    return crashes


def stored_batch_numbers(url: str) -> tuple[list[int], list[str]]:
    """The batch numbers stored, in order, and what is wrong with their shape."""
    with statekeel.open(url) as store:
        s = store.find_session("crash")
        messages = [] if s is None else s.history()
    numbers, problems = [], []
    for idx in range(0, len(messages), 3):
        batch = messages[idx : idx + 3]
        n = batch[0]["n"]
        if [(m["n"], m["part"]) for m in batch] != [(n, p) for p in range(3)]:
            problems.append(f"messages {idx}..{idx + 2}: {[(m['n'], m['part']) for m in batch]} is not one whole batch")
        numbers.append(n)
    if numbers != sorted(set(numbers)):
        problems.append("batches are doubled or out of order")
    return numbers, problems


def losses(checker: Appends, stored: list[int], crashes: list[Crash]) -> list[list[float]]:
    """Per crash, the ages (seconds before the crash) of the acknowledged batches it lost."""
    present = set(stored)
    per_crash: list[list[float]] = [[] for _ in crashes]
    for n, acked_at in checker.ack_times.items():
        if n not in present:
            crash = next((i for i, c in enumerate(crashes) if acked_at <= c.killed_at), len(crashes) - 1)
            per_crash[crash].append(round(crashes[crash].killed_at - acked_at, 4))
    return per_crash


@pytest.mark.slow
def test_server_crash_loses_no_acknowledged_write(setup: str, target: Target, reliability_report: Reporter) -> None:
    kills = scale(6 if setup == "postgres" else 5, 100)
    rng = random.Random(seed := random.randrange(2**32))
    checker, started, found = Appends(), time.monotonic(), []
    crashes: list[Crash] = []
    child = Child("appends", target.url, "server")
    try:
        child.go()
        crashes = crash_under_load(target, child, kills, rng)
        lines = child.kill()
    except Exception as exc:  # a finding too: report it, then fail
        found.append(f"stopped after {len(crashes)} crashes: {exc!r}"[:2000])
        lines = child.kill()
    finally:
        child.close()
    checker.absorb(lines)
    stored, shape = stored_batch_numbers(target.url)
    lost = losses(checker, stored, crashes)
    synchronous = setup != "redis-everysec"
    found += shape + doctor_problems(target.url)
    if synchronous and any(lost):
        found.append(f"{sum(map(len, lost))} acknowledged batches lost at synchronous settings "
                     f"(per crash: {[len(x) for x in lost]})")
    reliability_report(
        "server crash", setup, kills=len(crashes), how=sorted({c.how for c in crashes}),
        acknowledged=checker.acked, retries=sum(line.startswith("retry") for line in lines),
        lost_per_kill=[len(x) for x in lost], lost_window_s=max((max(x) for x in lost if x), default=0.0),
        restart_s=round(max((c.back_at - c.killed_at for c in crashes), default=0.0), 2),
        seconds=round(time.monotonic() - started, 2), seed=seed, found=found[:30], found_count=len(found),
    )  # fmt: skip
    assert not found, "\n".join(found[:30])
