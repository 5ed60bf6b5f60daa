"""Starting, releasing and killing the child writers of the crash tests.

A child (``_child.py``) is started ahead of time and waits on stdin, so its interpreter
start-up (~0.2 s) overlaps the parent's checks of the previous kill. ``Killer.kill_one``
releases the waiting child, SIGKILLs it after a random delay and returns every complete
line it printed: what it acknowledged before it died.
"""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHILD = Path(__file__).with_name("_child.py")
READY_TIMEOUT = 60.0
"""Seconds a child may take to start, or to write its first line (a liveness bound)."""
MID_STREAM_EVERY = (True, False, True, True)
"""Which kills wait for the child's first line (mid-stream), in turn: 3 of every 4, and the first
two are one of each kind, so even a short run of two kills has both (a random draw could miss one)."""


def child_tag(k: int) -> str:
    """The k-th child's tag (0-based), zero-padded so one child's session ids are one range in id order."""
    return f"c{k:05d}"


class Child:
    """One started child, waiting for ``go``; a thread drains its stdout so it never blocks."""

    def __init__(self, workload: str, url: str, tag: str) -> None:
        self.tag = tag
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), workload, url, tag],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.started_writing = threading.Event()
        """Set at the child's first line after ``ready`` (or when it ends)."""
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self._errors: collections.deque[str] = collections.deque(maxlen=40)
        # stderr is drained too: a child whose stderr pipe fills (a driver logging a warning per
        # failed reconnect, say) would block inside its logging call and look hung
        self._err_reader = threading.Thread(target=self._drain_errors, daemon=True)
        self._err_reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                break  # cut short by the kill: never acknowledged
            if line == "ready\n":
                self._ready.set()
            else:
                self.lines.append(line.rstrip("\n"))
                self.started_writing.set()
        self._ready.set()
        self.started_writing.set()

    def _drain_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._errors.append(line)

    def go(self) -> None:
        """Release the child once it is ready (raises with its stderr if it died instead)."""
        if not self._ready.wait(READY_TIMEOUT) or self.proc.poll() is not None:
            raise RuntimeError(f"the child {self.tag} did not start: {self.stderr()}")
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> list[str]:
        """SIGKILL, then every complete line it printed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join()
        return self.lines

    def stderr(self) -> str:
        """The end of what the child printed on stderr (complete once it ended)."""
        if self.proc.poll() is not None:
            self._err_reader.join(timeout=5)
        return "".join(self._errors)[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err_reader.join(timeout=5)  # at EOF now: the child is gone
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@dataclass
class Killer:
    """Runs ``kills`` children of one workload in turn, each killed at a random moment."""

    workload: str
    url: str
    max_delay: float
    """Kills land uniformly in [0, max_delay] seconds after the child is released or, for
    the kills ``MID_STREAM_EVERY`` marks, after its first line — so a slow start (a loaded machine, a
    server connection) does not make every kill land before the first write."""
    seed: int = field(default_factory=lambda: random.randrange(2**32))
    kills: int = 0
    kills_after_an_ack: int = 0
    """Kills that hit a child which had acknowledged at least one write (mid-stream)."""
    _spare: Child | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _child(self) -> Child:
        child = self._spare or Child(self.workload, self.url, child_tag(self.kills))
        self._spare = Child(self.workload, self.url, child_tag(self.kills + 1))
        return child

    def kill_one(self) -> list[str]:
        """Release the next child, kill it after a random delay, return its lines."""
        child = self._child()
        try:
            child.go()
            mid_stream = MID_STREAM_EVERY[self.kills % len(MID_STREAM_EVERY)]
            if mid_stream and not child.started_writing.wait(READY_TIMEOUT):
                raise RuntimeError(f"the child {child.tag} wrote nothing within {READY_TIMEOUT:g} s")
            time.sleep(self._rng.uniform(0, self.max_delay))
            if child.proc.poll() is not None:  # it must be killed, never end by itself
                raise RuntimeError(f"the child {child.tag} exited early: {child.stderr()}")
            lines = child.kill()
        finally:
            child.close()
        self.kills += 1
        self.kills_after_an_ack += any(line.startswith("ack") for line in lines)
        return lines

    def close(self) -> None:
        if self._spare is not None:
            self._spare.close()
            self._spare = None
