"""Graceful shutdown on SIGTERM (statekeel.GracefulShutdown), with real child processes.

What a pod being stopped needs: the work in flight is finished, nothing acknowledged is lost,
the leases are released so another process takes them at once (not after they expire), the
store is closed, and the process exits 0. The child is deploy/k8s/agent_example.py, the entry
point the manifests expect, or a small script when a second thread is in flight.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import statekeel
from statekeel import GracefulShutdown, ShutdownRequested, UsageError

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "deploy" / "k8s" / "agent_example.py"
LONG_LEASE = "600"
"""Far longer than any test: a lease taken over at once was released, not expired."""


def _spawn(args: list[str], url: str, **env: str) -> subprocess.Popen[str]:
    full = {**os.environ, "STATEKEEL_URL": url, "AGENT_LEASE_SECONDS": LONG_LEASE, **env}
    return subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def _expect(child: subprocess.Popen[str], line: str) -> None:
    assert child.stdout is not None
    got = child.stdout.readline().strip()
    if got != line:
        child.kill()
        raise AssertionError(f"expected {line!r}, got {got!r}; stderr: {child.communicate()[1]}")


@pytest.mark.multiprocess
def test_sigterm_finishes_releases_the_lease_and_loses_nothing_acknowledged(store_url: str) -> None:
    statekeel.open(store_url).close()
    child = _spawn([str(AGENT)], store_url, AGENT_SESSION="pod-0")
    assert child.stdin is not None and child.stdout is not None
    _expect(child, "ready")
    for i in range(5):
        child.stdin.write(f"m{i}\n")
        child.stdin.flush()
        _expect(child, f"stored m{i}")
    child.stdin.write("m5\n")  # may be in flight when the signal lands: stored whole or not at all
    child.stdin.flush()
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.splitlines()[-1] == "stopped cleanly", out
    with statekeel.open(store_url) as store:
        s = store.session("pod-0", lease="30s")  # at once: LeaseLostError if it had not been released
        assert s.lease_token == 2
        contents = [m["content"] for m in s.history()]
    assert contents[:5] == [f"m{i}" for i in range(5)] and contents[5:] in ([], ["m5"])


_WORKER = textwrap.dedent("""
    import sys, threading, statekeel
    store = statekeel.open(sys.argv[1])
    with statekeel.GracefulShutdown(store, drain_timeout=600) as stop:
        s = stop.hold(store.session("worker", lease="600s"))
        started = threading.Event()

        def in_flight():
            with stop.work():
                started.set()
                stop.wait()                      # still running when SIGTERM arrives
                s.append("finished after SIGTERM")
                print("acknowledged", flush=True)

        t = threading.Thread(target=in_flight)
        t.start()
        started.wait()
        print("ready", flush=True)
        stop.wait()                              # the main thread idles: ShutdownRequested lands here
        print("not reached", flush=True)
    print("closed", flush=True)
""")


def test_close_waits_for_work_in_flight_on_another_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    child = _spawn([str(script), url], url)
    _expect(child, "ready")
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.splitlines() == ["acknowledged", "closed"], (out, err)
    with statekeel.open(url) as store:
        s = store.session("worker", lease="30s")
        assert s.history() == ["finished after SIGTERM"]


def test_a_signal_inside_a_work_block_is_raised_when_the_block_ends(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path / 'state.db'}")
    after: list[str] = []
    with GracefulShutdown(store) as stop:
        s = stop.hold(store.session("s", lease="600s"))
        with stop.work():
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(60)  # the handler ran, inside the block, and raised nothing
            s.append("written after the signal, inside the block")
            after.append("block finished")
        after.append("not reached: ShutdownRequested is raised as the block ends")
    assert after == ["block finished"]
    assert signal.getsignal(signal.SIGTERM) is not stop._on_signal  # the previous handler is back
    with statekeel.open(f"sqlite:///{tmp_path / 'state.db'}") as again:
        assert again.session("s", lease="30s").history() == ["written after the signal, inside the block"]


def test_no_new_work_starts_once_a_stop_was_requested(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path / 'state.db'}")
    stop = GracefulShutdown(store)  # not installed: request() is the signal's effect without one
    with stop.work():
        pass
    stop.request()
    assert stop.requested
    with pytest.raises(ShutdownRequested), stop.work():
        pytest.fail("a unit of work started after the stop was requested")
    stop.close()
    stop.close()  # idempotent
    assert stop.unfinished == 0


def test_interrupt_false_only_sets_the_flag(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path / 'state.db'}")
    with GracefulShutdown(store, interrupt=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(60)
        with pytest.raises(ShutdownRequested), stop.work():
            pass


def test_installing_outside_the_main_thread_is_a_usage_error(tmp_path: Path) -> None:
    store = statekeel.open(f"sqlite:///{tmp_path / 'state.db'}")
    stop = GracefulShutdown(store)
    caught: list[BaseException] = []

    def install() -> None:
        try:
            stop.install()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            caught.append(exc)

    t = threading.Thread(target=install)
    t.start()
    t.join()
    assert len(caught) == 1 and isinstance(caught[0], UsageError) and "main thread" in str(caught[0])
    stop.close()


def test_a_negative_drain_timeout_is_refused(tmp_path: Path) -> None:
    with statekeel.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        with pytest.raises(UsageError, match="drain_timeout"):
            GracefulShutdown(store, drain_timeout=-1)
