"""The tamper-evident conformance suite again, with chain heads that move their records to buckets past two.

A partition's chain head lists its records itself up to ``SPILL`` (32) and in buckets past that
(:class:`statekeel.core.chain.Head`); most conformance tests write fewer records than that to a
partition. Here every test of ``test_conformance_chain`` runs with ``SPILL = 2``, so every feature —
sessions, state, runs, checkpoints, events, tenants, lifecycle, retention, the model — writes, reads,
scans, expires and verifies partitions whose heads have buckets, flush them and double them. (Child
processes some tests start keep the default.)
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_conformance_chain import *  # noqa: F403
from test_conformance_chain import run_chained_model

from statekeel.core import chain_plan
from statekeel.testing import ServerPool

KEY = base64.b64encode(b"C" * 32).decode()


@pytest.fixture(autouse=True)
def _chained_with_small_heads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STATEKEEL_INTEGRITY", "chain")
    monkeypatch.setenv("STATEKEEL_MASTER_KEY", KEY)
    monkeypatch.setattr(chain_plan, "SPILL", 2)
    yield


def test_chained_store_matches_model(backend_name: str, tmp_path: Path, statekeel_servers: ServerPool) -> None:
    """The model with stores of its own: the plain chain run's stores (``memory://test-20000``, schema
    ``sk_test_20000``, ...) may still hold what it wrote when both run in one process."""
    run_chained_model(backend_name, tmp_path, statekeel_servers, first=30_000)
