"""The process the crash tests kill: writes through the public API and acknowledges each write.

Run as ``python _child.py WORKLOAD URL TAG``. It imports statekeel, prints ``ready`` and
waits for a line on stdin, so the parent can start the next child while it checks the
last one and the ~0.2 s import is not paid between kills. Then it writes until it is
killed (SIGKILL: no ``finally``, no flush but the ones done), printing one line per
write on stdout, flushed, only AFTER the call returned::

    ack <what>          the call returned: the write is acknowledged and must survive
    ack <n> at <time>   (appends) with the wall-clock time of the acknowledgement, for loss windows
    retry <n>           (appends) batch n failed with UnavailableError and is retried
    opening <name>      (first_open) about to create store <name>: it must open afterwards
    exec <j> <k>        (runs) a step function ran — it must never run again once acked

Calls that fail with ``UnavailableError`` (a server being killed) are retried; an
append batch carries its number in the state written with it, so a retry first looks
whether the failed attempt committed after all and does not write it twice.
``URL`` may contain ``{i}`` (``first_open``: a fresh store per iteration). ``TAG`` keeps
the sessions, decision sessions and fresh stores of different children apart; runs are
shared: each child resumes the run the last one was in.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import statekeel
from statekeel import UnavailableError

T = TypeVar("T")
PAD = "x" * 200  # a message the size of a short chat turn


def say(*words: object) -> None:
    """One line on stdout, flushed now: the parent reads what got out before the kill."""
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


def retrying(call: Callable[[], T]) -> T:
    """``call()`` until the server answers (the server-crash tests kill it under us)."""
    while True:
        try:
            return call()
        except UnavailableError:
            time.sleep(0.02)


def appends(url: str, tag: str) -> None:
    """Numbered batches of three messages with the batch number as session state."""
    store = retrying(lambda: statekeel.open(url))
    s = retrying(lambda: store.session("crash"))
    n = retrying(lambda: s.state.get("last", -1)) + 1  # resume where the last child stopped
    while True:
        batch = [{"n": n, "part": p, "text": PAD} for p in range(3)]
        while True:
            try:
                s.append(*batch, state={"last": n})
                break
            except UnavailableError:
                say("retry", n)
                time.sleep(0.02)
                if retrying(lambda: s.state.get("last", -1)) >= n:
                    break  # the failed attempt committed: do not write it twice
        say("ack", n, "at", repr(time.time()))
        n += 1


def sessions(url: str, tag: str) -> None:
    """New sessions, one per call: D2 left some unlisted when killed mid-creation."""
    store = retrying(lambda: statekeel.open(url))
    for i in itertools.count():
        sid = f"{tag}-{i}"
        retrying(lambda: store.session(sid, user="u-crash", ttl="1h"))
        say("ack", sid)


def first_open(url: str, tag: str) -> None:
    """A fresh store per iteration: the kill lands in ``statekeel.open`` of a new path."""
    for i in itertools.count():
        name = f"{tag}_{i}"
        say("opening", name)
        store = statekeel.open(url.format(i=name))
        store.app.put("opened", name)
        store.close()
        say("ack", name)


def decide(url: str, tag: str) -> None:
    """Decision blocks; on start, resolve what a killed child left incomplete (recovery)."""
    store = retrying(lambda: statekeel.open(url))
    for pending in store.decisions(incomplete=True, limit=1000):
        store.resolve_decision(pending.id, "recovered", by="restart")
        say("ack", "resolved", pending.id)
    s = store.session(f"decide-{tag}")
    for i in itertools.count():
        with s.decide(f"step {i}", rationale="crash test", action={"i": i}) as d:
            say("ack", "entered", d.id)
            s.state.put("i", i)
            d.outcome({"i": i})
        say("ack", "done", d.id, i)


def runs(url: str, tag: str) -> None:
    """Runs of five memoised steps; a finished step must never execute again."""
    store = retrying(lambda: statekeel.open(url))

    def work(j: int, k: int) -> dict[str, int]:
        say("exec", j, k)
        return {"j": j, "k": k}

    for j in itertools.count(store.app.get("next_run", 0)):  # a kill before the put replays run j
        with store.run(f"run-{j}") as run:
            for k in range(5):
                run.step(f"s{k}", work, j, k)
                say("ack", j, k)
        say("ack", "complete", j)
        store.app.put("next_run", j + 1)


WORKLOADS: dict[str, Callable[[str, str], Any]] = {
    "appends": appends, "sessions": sessions, "first_open": first_open, "decide": decide, "runs": runs,
}


def main(argv: list[str]) -> None:
    workload, url, tag = argv
    say("ready")
    if not sys.stdin.readline():  # the parent is gone (its next line would be "go")
        return
    WORKLOADS[workload](url, tag)  # ends at the kill, or at the first print once the parent is gone


if __name__ == "__main__":
    main(sys.argv[1:])
