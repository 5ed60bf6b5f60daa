"""``statekeel demo``: an agent is SIGKILLed mid-conversation, then picks up where it was.

1. A real child process (:mod:`statekeel.demo_agent`) holds a scripted
   conversation, printing one line per acknowledged (durably written) message.
2. During turn ``--kill-at``, while it waits for its "model", the parent sends
   it SIGKILL: no handler runs, nothing is flushed or closed.
3. The parent finds the session active but silent (stale), marks it crashed,
   reopens it as a restarted agent would, checks that every acknowledged
   message is there, answers the unanswered user message and finishes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

import statekeel
from statekeel import Session, Store
from statekeel import demo_agent as agent
from statekeel.backends import parse

from ._output import CliState, console, emit_json, json_option, short_json, to_jsonable
from .sessions import read_session

STALE_AFTER = 0.5
"""Seconds of silence after which the demo agent counts as gone (it writes every 0.15 s)."""
WATCHDOG = 20.0
"""Seconds after which a stuck child is killed anyway."""


@dataclass
class Child:
    """What the parent saw of the agent process."""

    pid: int = 0
    returncode: int | None = None
    acks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def killed_by(self) -> str | None:
        rc = self.returncode
        return signal.Signals(-rc).name if rc is not None and rc < 0 else None


class Narrator:
    """Human output of the demo; silent under --json."""

    def __init__(self, out: Console | None) -> None:
        self.out = out

    def say(self, text: str) -> None:
        if self.out:
            self.out.print(text)

    def message(self, turn: int, msg: dict[str, str], note: str = "") -> None:
        colour = "cyan" if msg["role"] == "user" else "green"
        tail = f"  [dim]{note}[/dim]" if note else ""
        self.say(f"   [{colour}]{msg['role']:>9}[/{colour}] [dim]t{turn}[/dim] {escape(msg['content'])}{tail}")


def _new_session_id(store: Store) -> str:
    n = 1
    while store.session_info(f"demo-{n}") is not None:
        n += 1
    return f"demo-{n}"


def _events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in lines if x.startswith("{")]


def _run_child(url: str, sid: str, turns: int, kill_at: int, say: Narrator) -> Child:
    cmd = [sys.executable, "-m", "statekeel.demo_agent", "--url", url, "--session", sid, "--turns", str(turns)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(WATCHDOG, proc.kill)
    watchdog.start()
    child, killed = Child(proc.pid), False
    assert proc.stdout is not None and proc.stderr is not None
    try:
        for event in map(json.loads, iter(proc.stdout.readline, "")):
            if event["event"] == "started":
                say.say(f"[bold]1. agent started[/bold] (pid {proc.pid}), talking to a customer:")
                continue
            child.acks.append(event)
            say.message(event["turn"], agent.turn_messages(event["turn"])[event["role"] == "assistant"])
            if event["turn"] == kill_at and event["role"] == "user":
                proc.kill()  # SIGKILL: no handler, no flush, no close
                killed = True
                break
        # Lines the child printed before the signal landed were acknowledged too.
        child.acks += [e for e in _events(proc.stdout.read().splitlines()) if e["event"] == "ack"]
        child.returncode = proc.wait()
    finally:
        watchdog.cancel()
    if not killed:
        raise click.ClickException(
            f"the demo agent stopped before turn {kill_at} (exit code {child.returncode}): {proc.stderr.read()}"
        )
    return child


def _wait_until_stale(store: Store, sid: str) -> tuple[str, float]:
    """(status, seconds silent) once the session has been silent for STALE_AFTER."""
    while True:
        info = read_session(store, sid).info()
        silent = time.time() - info.updated_at.timestamp()
        if info.is_stale(STALE_AFTER):
            return info.status, silent
        time.sleep(STALE_AFTER - silent + 0.02)


def _finish(s: Session, turns: int, say: Narrator) -> dict[str, Any]:
    """Answer the unanswered user message (if any), hold the remaining turns, complete."""
    say.say("\n[bold]3. continuing the conversation[/bold]")
    done = int(s.state.get("turn", 0))
    last = s.history(last=1)
    for turn in range(done + 1, turns + 1):
        user, reply = agent.turn_messages(turn)
        if last != [user]:
            s.append(user)
            say.message(turn, user)
        else:
            say.message(turn, user, "(recovered, unanswered: answering it now)")
        s.append(reply, state=agent.turn_state(turn, turns))
        say.message(turn, reply)
        last = []
    s.complete()
    final = s.history()
    matches = final == agent.expected_history(turns)
    return {"messages": len(final), "status": s.info().status, "history_matches_script": matches}


def _recover(store: Store, sid: str, turns: int, acked: int, say: Narrator) -> tuple[Session, dict[str, Any]]:
    """Find the session stale, mark it crashed, reopen it as a restarted agent, report."""
    status, silent = _wait_until_stale(store, sid)
    say.say(f"\n[bold]2. recovery[/bold]: session {sid} is [yellow]{status}[/yellow] but silent for "
            f"{silent:.2f} s (> {STALE_AFTER} s): its agent is gone: marked [red]crashed[/red]")
    read_session(store, sid).mark_crashed()  # what a supervisor does
    s = store.session(sid, user=agent.USER)  # what a restarted agent does
    assert s.resumed is not None
    history = s.history()
    state = {"turn": s.state.get("turn"), "plan": s.state.get("plan")}
    say.say(f"   reopened it: resumed from status [red]{s.resumed.status}[/red], now active again")
    say.say(f"   recovered [bold]{len(history)} messages[/bold]; the killed agent had acknowledged {acked}: "
            + ("[green]nothing lost[/green]" if len(history) == acked else "[red]MISMATCH[/red]"))
    say.say(f"   last state: turn = {state['turn']}, plan = {escape(short_json(state['plan']))}")
    return s, {
        "found_status": status, "silent_seconds": round(silent, 3), "stale_after_seconds": STALE_AFTER,
        "marked": "crashed", "resumed_from": s.resumed.status, "recovered_messages": len(history),
        "acknowledged_messages": acked, "nothing_lost": len(history) == acked,
        "recovered_matches_script": history == agent.expected_history(turns)[: len(history)],
        "state": state, "unanswered_user_message": bool(history) and history[-1]["role"] == "user",
    }


def _check_options(url: str, turns: int, kill_at: int) -> None:
    if kill_at > turns:
        raise click.BadParameter(f"--kill-at {kill_at} is past the last turn ({turns})", param_hint="--kill-at")
    if parse(url).scheme == "memory":
        raise click.UsageError("the demo needs a store that two processes share; memory:// lives in one process")


def _ending(summary: dict[str, Any], say: Narrator) -> None:
    final = summary["final"]
    ok = final["history_matches_script"] and summary["recovery"]["nothing_lost"]
    mark, verdict = ("[green]✓", "identical to") if ok else ("[red]✗", "DIFFERENT from")
    say.say(f"\n{mark} done[/] in {summary['seconds']} s: {final['messages']} messages, "
            f"session {final['status']}, history {verdict} the script")
    say.say(f"[dim]look around: statekeel --url {summary['url']} sessions history {summary['session']}[/dim]")


@click.command("demo", short_help="Watch a killed agent resume with nothing lost.")
@click.option("--url", "demo_url", metavar="URL", help="Store for the demo (default: the main --url).")
@click.option("--turns", type=click.IntRange(1, 500), default=len(agent.SCRIPT), show_default=True,
              help="Turns in the conversation.")
@click.option("--kill-at", type=click.IntRange(1), help="Turn during which it is killed [default: the middle].")
@json_option
@click.pass_context
def demo(ctx: click.Context, demo_url: str | None, turns: int, kill_at: int | None, as_json: bool) -> None:
    """Kill an agent mid-conversation (SIGKILL), then watch it resume with nothing lost.

    Runs in a couple of seconds on the embedded SQLite store (./.statekeel/);
    the conversation is scripted (no network, no model).

    Example: statekeel demo --turns 6 --kill-at 3
    """
    url, kill_at = demo_url or ctx.ensure_object(CliState).url, kill_at or (turns + 1) // 2
    _check_options(url, turns, kill_at)
    say, started = Narrator(None if as_json else console()), time.monotonic()
    with statekeel.open(url) as store:
        sid = _new_session_id(store)
        say.say(f"[bold]statekeel demo[/bold]: store {url}, session {sid}, {turns} turns, "
                f"killed during turn {kill_at}\n")
        child = _run_child(url, sid, turns, kill_at, say)
        say.say(f"   [red bold]✗ SIGKILL[/red bold] sent to pid {child.pid} while it waited for its model: "
                f"exit code {child.returncode} ({child.killed_by}), {len(child.acks)} messages acknowledged")
        session, recovery = _recover(store, sid, turns, len(child.acks), say)
        final = _finish(session, turns, say)
    summary = {
        "url": url, "session": sid, "turns": turns, "kill_at": kill_at,
        "seconds": round(time.monotonic() - started, 2),
        "child": {"pid": child.pid, "returncode": child.returncode, "killed_by": child.killed_by,
                  "acknowledged": child.acks, "acknowledged_messages": len(child.acks)},
        "recovery": recovery, "final": final,
    }
    if as_json:
        emit_json(to_jsonable(summary))
    else:
        _ending(summary, say)
