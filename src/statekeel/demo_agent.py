"""The scripted agent that ``statekeel demo`` runs in a child process, then kills.

    python -m statekeel.demo_agent --url URL --session ID --turns N

Each turn appends the user's message, "thinks" (sleeps: the model call), then
appends the assistant's reply together with the turn's state in one atomic
write. After every write returns, it prints one JSON line on stdout::

    {"event": "ack", "turn": 2, "role": "user", "seq": 3}

so the parent knows exactly which messages were acknowledged: each of them
must survive the kill. The conversation is scripted: no network, no model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import statekeel

__all__ = ["USER", "SCRIPT", "turn_messages", "turn_state", "expected_history", "run", "main"]

USER = "u-demo"
"""The user every demo session belongs to."""

SCRIPT: list[tuple[str, str, str]] = [
    # (user says, assistant replies, plan step the assistant is on)
    ("Hi, my order #991 still hasn't arrived. It was due last Monday.",
     "Sorry about that! Let me look up order #991.", "look up the order"),
    ("Thanks. The tracking page hasn't moved in five days.",
     "The carrier last scanned it in Lyon on 15 November; I'm asking them what happened.",
     "ask the carrier"),
    ("Honestly, can I just get a refund instead?",
     "It is more than 7 days late, so yes: you qualify for a full refund of EUR 42.90.",
     "check the refund policy"),
    ("Yes please, refund it.",
     "Done: refund R-5531 for EUR 42.90 is on its way to your card.", "issue the refund"),
    ("How long until I see the money?",
     "Usually 3 to 5 business days, depending on your bank.", "explain the timing"),
    ("Great, thanks for the help!",
     "You're welcome! I've closed ticket #991. Have a good day.", "close the ticket"),
]


def turn_messages(turn: int) -> tuple[dict[str, str], dict[str, str]]:
    """The user's message and the assistant's reply of ``turn`` (from 1)."""
    if turn <= len(SCRIPT):
        user, reply, _ = SCRIPT[turn - 1]
    else:
        user, reply = f"One more question (turn {turn}).", f"Sure, here is answer {turn}."
    return {"role": "user", "content": user}, {"role": "assistant", "content": reply}


def turn_state(turn: int, turns: int) -> dict[str, Any]:
    """The state written with the assistant's reply of ``turn``."""
    step = SCRIPT[turn - 1][2] if turn <= len(SCRIPT) else f"follow-up {turn}"
    return {"turn": turn, "plan": {"step": turn, "of": turns, "doing": step}}


def expected_history(turns: int) -> list[dict[str, str]]:
    """The whole conversation, as it must read when the demo ends."""
    return [m for t in range(1, turns + 1) for m in turn_messages(t)]


def _ack(turn: int, role: str, seq: int) -> None:
    print(json.dumps({"event": "ack", "turn": turn, "role": role, "seq": seq}), flush=True)


def run(url: str, session_id: str, turns: int, think: float) -> None:
    """Hold the conversation of ``session_id`` from turn 1 to ``turns``."""
    with statekeel.open(url) as store:
        s = store.session(session_id, user=USER)
        print(json.dumps({"event": "started", "pid": os.getpid()}), flush=True)
        for turn in range(1, turns + 1):
            user, reply = turn_messages(turn)
            _ack(turn, "user", s.append(user))
            time.sleep(think)  # the model call: the parent kills the agent in here
            _ack(turn, "assistant", s.append(reply, state=turn_state(turn, turns)))
        s.complete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m statekeel.demo_agent", description="The scripted agent that `statekeel demo` kills."
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--turns", type=int, default=len(SCRIPT))
    parser.add_argument("--think", type=float, default=0.15, help="seconds each model call takes")
    args = parser.parse_args(argv)
    run(args.url, args.session, args.turns, args.think)
    return 0


if __name__ == "__main__":
    sys.exit(main())
