"""A conversation loop and an observer in another process, sharing one session.

    python examples/observer.py

The primary loop talks to the user; each turn it reads the observer's note
with a staleness tolerance (``max_age``) and never waits for it: "not ready"
until the observer has written one, "stale" when the observer fell behind.
The observer (this same file with ``--observe``, started as a separate
process) reads the recent history and writes a stamped note of issues it sees.
No pub/sub: one record per author, so reads never block writes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import statekeel

USER_TURNS = [
    "Hi, my order 991 is late.",
    "It was due last week!",
    "Can I get a refund?",
    "The tracking page says nothing.",
    "Please hurry!",
    "Thanks, that works.",
]


def review(history: list[Any]) -> list[str]:
    """What the observer flags: a deterministic stand-in for a second model."""
    said = " ".join(m["content"] for m in history if m["role"] == "user")
    issues = []
    if "refund" in said.lower():
        issues.append("user asked for a refund: follow the refund policy")
    if said.count("!") >= 2:
        issues.append("user is frustrated: acknowledge the delay")
    return issues


def respond(text: str, issues: list[str]) -> str:
    hint = f" (minding: {'; '.join(issues)})" if issues else ""
    return f"I hear you: {text!r}{hint}"


def observe(url: str, session_id: str, interval: float) -> None:
    with statekeel.open(url) as store:
        s = store.session(session_id)
        while s.info().status == "active":
            s.notes.write("observer", {"seen": len(s), "issues": review(s.history(last=10))})
            time.sleep(interval)


def converse(url: str, session_id: str, pause: float, max_age: float) -> None:
    with statekeel.open(url) as store:
        s = store.session(session_id)
        cmd = [sys.executable, __file__, "--observe", "--url", url, "--session", session_id]
        observer = subprocess.Popen(cmd)
        try:
            for turn, text in enumerate(USER_TURNS, start=1):
                s.append({"role": "user", "content": text})
                note = s.notes.read("observer", max_age=max_age)
                if not note.ready:
                    print(f"turn {turn}: observer note not ready; answering without it")
                else:
                    state = "stale" if note.stale else "fresh"
                    print(f"turn {turn}: observer note {state} (age {note.age:.2f}s): {note.value}")
                issues = note.value["issues"] if note.fresh else []
                s.append({"role": "assistant", "content": respond(text, issues)})
                time.sleep(pause)
        finally:
            s.complete()  # the observer stops when the session is no longer active
            observer.wait(timeout=60)
        time.sleep(max_age * 1.5)
        late = s.notes.read("observer", max_age=max_age)
        print(f"after the observer stopped: ready={late.ready} stale={late.stale} (age {late.age:.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("STATEKEEL_URL", statekeel.DEFAULT_URL))
    parser.add_argument("--session", default=f"observer-demo-{os.getpid()}")
    parser.add_argument("--observe", action="store_true", help="run as the observer process")
    parser.add_argument("--pause", type=float, default=0.4, help="seconds between turns")
    parser.add_argument("--max-age", type=float, default=0.5, help="staleness tolerance in seconds")
    args = parser.parse_args()
    if args.observe:
        observe(args.url, args.session, interval=0.1)
    else:
        converse(args.url, args.session, args.pause, args.max_age)


if __name__ == "__main__":
    main()
