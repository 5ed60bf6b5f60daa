"""The whole conformance suite again, on tamper-evident stores (``integrity="chain"``).

Every feature is written once on the backend protocol; the chain sits between
the features and the backend, so every feature must work unchanged through it.
``STATEKEEL_INTEGRITY=chain`` turns it on for every store the suite opens,
in this process and in the processes it starts.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from statekeel.testing import BACKENDS, BackendContext, ServerPool
from statekeel.testing.conformance.test_model import make_machine

from statekeel.testing.conformance.test_async import *  # noqa: F403
from statekeel.testing.conformance.test_async_reads import *  # noqa: F403
from statekeel.testing.conformance.test_processes import *  # noqa: F403
from statekeel.testing.conformance.test_sessions import *  # noqa: F403
from statekeel.testing.conformance.test_state import *  # noqa: F403
from statekeel.testing.conformance.test_values import *  # noqa: F403
from statekeel.testing.conformance.test_decisions import *  # noqa: F403
from statekeel.testing.conformance.test_runs import *  # noqa: F403
from statekeel.testing.conformance.test_notes import *  # noqa: F403
from statekeel.testing.conformance.test_checkpoints import *  # noqa: F403
from statekeel.testing.conformance.test_events import *  # noqa: F403
from statekeel.testing.conformance.test_upcasting import *  # noqa: F403
from statekeel.testing.conformance.test_tenants import *  # noqa: F403
from statekeel.testing.conformance.test_lifecycle import *  # noqa: F403
from statekeel.testing.conformance.test_idempotency import *  # noqa: F403
from statekeel.testing.conformance.test_leases import *  # noqa: F403
from statekeel.testing.conformance.test_run_liveness import *  # noqa: F403
from statekeel.testing.conformance.test_retention import *  # noqa: F403

KEY = base64.b64encode(b"C" * 32).decode()


def test_chained_store_matches_model(backend_name: str, tmp_path: Path, statekeel_servers: ServerPool) -> None:
    """test_model's state machine, through the chain; a database of its own (no examples replayed from the
    plain run, whose store behaves the same but is another test) and derandomized."""
    run_chained_model(backend_name, tmp_path, statekeel_servers, first=20_000)


def run_chained_model(backend_name: str, tmp_path: Path, servers: ServerPool, *, first: int) -> None:
    """Run the model with store ``first``, ``first + 1``, ... — numbers no other test of this process uses
    (``memory://`` stores and PostgreSQL schemas are named by them and outlive the test)."""
    counter = iter(range(first, first + 10_000))

    def fresh_url() -> str:
        n = next(counter)
        sub = tmp_path / f"run{n}"
        sub.mkdir()
        return BACKENDS[backend_name](BackendContext(sub, servers, n))

    run_state_machine_as_test(make_machine(fresh_url), settings=settings(
        max_examples=15, stateful_step_count=25, deadline=None, database=None, derandomize=True))


@pytest.fixture(autouse=True)
def _chained(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STATEKEEL_INTEGRITY", "chain")
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", KEY)
    yield
