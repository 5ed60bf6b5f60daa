"""Five memoised steps that survive a kill: run it, kill it, run it again.

    python examples/five_tasks.py --kill-after 3    # SIGKILLs itself after step 3
    python examples/five_tasks.py                   # resumes: steps 1-3 reused, 4-5 run

Steps: generate words -> sort -> reverse each -> join with hyphens -> count
characters. Each step's result is stored with the step's completion, so a
re-run returns it instead of running the step again (see ``statekeel runs show five-tasks``).
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from typing import Any

import statekeel


def generate() -> list[str]:
    return ["durable", "agents", "resume", "where", "they", "stopped"]


def sort_words(words: list[str]) -> list[str]:
    return sorted(words)


def reverse_each(words: list[str]) -> list[str]:
    return [w[::-1] for w in words]


def join_hyphens(words: list[str]) -> str:
    return "-".join(words)


def count_characters(text: str) -> int:
    return len(text)


STEPS: list[tuple[str, Callable[..., Any]]] = [
    ("generate", generate),
    ("sort", sort_words),
    ("reverse", reverse_each),
    ("join", join_hyphens),
    ("count", count_characters),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("STATEKEEL_URL", statekeel.DEFAULT_URL))
    parser.add_argument("--run-id", default="five-tasks")
    parser.add_argument("--kill-after", type=int, metavar="N", help="SIGKILL this process after step N")
    args = parser.parse_args()

    with statekeel.open(args.url) as store, store.run(args.run_id) as run:
        value: Any = None
        for number, (name, fn) in enumerate(STEPS, start=1):
            value = run.step(name, fn) if number == 1 else run.step(name, fn, value)
            how = "reused" if name in run.reused else "ran"
            print(f"step {number} {name:<8} {how:<6} -> {value!r}", flush=True)
            if args.kill_after == number:
                print(f"killing myself after step {number} (SIGKILL: no cleanup runs)", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
    print(f"reused: {', '.join(run.reused) or 'none'}")
    print(f"ran: {', '.join(run.executed) or 'none'}")
    print(f"result: {value}")


if __name__ == "__main__":
    main()
