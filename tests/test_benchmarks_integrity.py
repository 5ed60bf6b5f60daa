"""The issue-11 benchmarks run end to end in a short mode (their figures are measured by hand, never asserted).

``bench_integrity.py`` and ``integrity_minimum.py`` are what the docs' encryption and tamper-evident
figures come from; a change to the API or the protocol that broke them would go unnoticed until the next
measurement. Twenty turns on SQLite: every mode writes, reloads and reports a positive time and a ratio.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from statekeel.testing import ServerPool

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the benchmarks are scripts beside the package, not installed with it
    sys.path.insert(0, str(REPO))

from benchmarks import bench_integrity, integrity_minimum  # noqa: E402


def test_bench_integrity_reports_every_mode(statekeel_servers: ServerPool) -> None:
    out = bench_integrity.run("sqlite", 20, statekeel_servers)
    assert set(out["vs_off"]) == {"encrypted", "chain", "both"}
    assert all(t > 0 for t in out["median_ms"].values()) and all(r > 0 for r in out["vs_off"].values())
    assert set(out["reload_ms"]) == set(bench_integrity.MODES)


@pytest.mark.parametrize("compared", [("chain",), ("encrypted",), ("encrypted", "chain")])
def test_integrity_minimum_reports_each_floor(statekeel_servers: ServerPool, compared: tuple[str, ...]) -> None:
    out = integrity_minimum.run("sqlite", 20, statekeel_servers, compared)
    floors = {integrity_minimum.TARGETS[m][0] for m in compared}
    assert set(out["median_us"]) == {"off", "backend", *compared, *floors}
    for mode in compared:
        figures = out[mode]
        assert figures["vs_off"] > 0 and figures["floor_vs_backend"] > 0 and figures["floor_vs_off"] > 0
        assert set(figures["extra_us"]) == {"statekeel", "floor"}


def test_integrity_minimum_runs_as_a_script() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "integrity_minimum.py"), "--backends", "sqlite",
                           "--modes", "chain", "--turns", "10"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '"repeat": 1' in proc.stdout and '"floor_vs_off"' in proc.stdout
