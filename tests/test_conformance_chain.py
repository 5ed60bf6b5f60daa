"""The whole conformance suite again, on tamper-evident stores (``integrity="chain"``).

Every feature is written once on the backend protocol; the chain sits between
the features and the backend, so every feature must work unchanged through it.
``STATEKEEL_INTEGRITY=chain`` turns it on for every store the suite opens,
in this process and in the processes it starts.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from statekeel.testing.conformance.test_async import *  # noqa: F403
from statekeel.testing.conformance.test_model import *  # noqa: F403
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


@pytest.fixture(autouse=True)
def _chained(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STATEKEEL_INTEGRITY", "chain")
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", KEY)
    yield
