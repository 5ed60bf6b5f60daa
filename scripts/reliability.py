"""Run the reliability suite (tests/reliability) and regenerate docs/reliability.md from what it found.

    python scripts/reliability.py                        # short mode: what CI runs (~3-5 min)
    python scripts/reliability.py --long                 # long mode, by hand: 1,000+ kills per backend
    python scripts/reliability.py --backends sqlite,files
    python scripts/reliability.py --no-docs -- -k crash  # extra pytest arguments after --

Every test of the suite reports what it ran and found through the ``reliability_report``
fixture (tests/reliability/conftest.py) as JSON lines in ``$STATEKEEL_RELIABILITY_REPORT``;
this script points that at a temporary file, runs pytest, and renders the rows: one table per
suite, one row per backend (and scenario), the problems found listed under it, then the mode,
date, machine and pytest's outcome. The exit code is pytest's, so a finding fails the command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
HIDDEN = {"suite", "backend", "mode", "at", "found", "found_count"}
"""Row fields that are not table columns (``found`` is listed under the table)."""
MAX_LISTED = 10
"""Problems listed per row in the document; the rest are counted."""

SUITE_NOTES = {
    "process crash": (
        "A child process writes through the public API and prints each acknowledgement after the "
        "call returned; the parent SIGKILLs it at a random moment, then checks that every "
        "acknowledged write is stored once, in order and whole, that the store opens and that "
        "`statekeel doctor` finds nothing, and starts the next child on the same store. "
        "`kills_mid_stream`: kills of a child that had acknowledged at least one write. Scenarios: "
        "`appends` (3-message batches with state), `sessions` (session creation; regression for D2), "
        "`first_open` (a fresh store per iteration), `decide` (decision blocks, with recovery), "
        "`runs` (memoised steps, which must never run again once acknowledged)."
    ),
    "server crash": (
        "A child writes numbered batches to a private server and retries through the outage; the "
        "server is crashed under load (PostgreSQL: `pg_ctl stop -m immediate` and SIGKILL of every "
        "server process, alternately; Redis: SIGKILL), restarted on its data, and every "
        "acknowledged batch is checked at the end. `lost_per_kill`: acknowledged batches missing "
        "after each crash; `lost_window_s`: how long before the crash the oldest lost one was "
        "acknowledged. Zero is required at synchronous settings; `redis-everysec` is measured only. "
        "A process kill leaves the kernel's page cache intact, so it shows what the server process "
        "itself loses; everysec's 1-2 s window on power loss or a kernel crash cannot show here."
    ),
    "faults": (
        "The n-th driver call of an operation fails (n = 1…N), once and persistently: SQLite's "
        "connection raises a disk I/O error, the files backend's syscalls raise ENOSPC/EIO, PostgreSQL's "
        "connection is terminated before or after a statement, Redis's connection breaks before sending "
        "or after (reply lost). The databases are real. Each fault must be a typed error or a successful "
        "retry; a failed batch leaves the store byte-identical unless the error says `maybe_applied`, "
        "and then it is wholly applied; acknowledged writes stay readable; the next call works."
    ),
    "disk_full": (
        "A real 2 MB tmpfs (or SQLite `max_page_count` where mounting is refused) filled by appends: "
        "the failing append is a typed error and stores nothing, reads and reopening keep working, "
        "and after space is freed a retry is stored once."
    ),
    "stateful": (
        "A Hypothesis state machine (appends with and without state, puts and deletes with every kind "
        "of `expect`, checkpoints, restores, decisions) checked against a model, with steps that reopen "
        "the store and, on SQLite and files, continue on a copy of the files taken while the store was "
        "open (a crash image)."
    ),
    "bad input": (
        "Every public entry point called with wrong types, empty, huge, NaN/inf, lone surrogates and "
        "hostile ids: each must raise its typed error, and a dump of every record and log entry must "
        "be identical before and after."
    ),
    "fuzzing": (
        "Hypothesis over `Codec.decode` (random bytes × every codec name, one flipped bit in real "
        "envelopes, damaged tags), store URLs and damaged export folders: a value or a typed error, "
        "never a raw exception. The files backend's own decoders are fuzzed in "
        "tests/test_files_reliability.py."
    ),
}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--long", action="store_true", help="the long mode (STATEKEEL_RELIABILITY=long)")
    parser.add_argument("--backends", help="comma-separated backends, as --statekeel-backends (default: all)")
    parser.add_argument("--no-docs", action="store_true", help="print the report instead of writing docs/reliability.md")
    parser.add_argument("--out", type=Path, default=DOC, help=f"where to write the report (default: {DOC})")
    args, rest = parser.parse_known_args(argv)
    return args, [a for a in rest if a != "--"]


def run_suite(args: argparse.Namespace, extra: list[str], report: Path, junit: Path) -> int:
    """pytest on tests/reliability with the mode and report file set; its exit code."""
    env = dict(os.environ, STATEKEEL_RELIABILITY_REPORT=str(report))
    env["STATEKEEL_RELIABILITY"] = "long" if args.long else "short"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability",
           f"--junitxml={junit}", *extra]  # fmt: skip
    if args.backends:
        cmd.append(f"--statekeel-backends={args.backends}")
    if args.long:
        cmd.append("--timeout=0")  # the long mode's scenarios run for minutes
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def read_rows(report: Path) -> list[dict[str, Any]]:
    if not report.exists():
        return []
    return [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line.strip()]


def pytest_outcome(junit: Path) -> dict[str, Any]:
    """Counts, duration and failed test ids from pytest's JUnit XML."""
    if not junit.exists():
        return {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0, "failed": []}
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite") if root.tag == "testsuites" else root
    assert suite is not None
    failed = [
        f"{case.get('classname', '')}::{case.get('name', '')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    return {**counts, "time": float(suite.get("time", "0")), "failed": failed}


def _version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not found"
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


def _postgres_version() -> str:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    pg_ctl = shutil.which("pg_ctl") or next((str(d / "pg_ctl") for d in dirs if (d / "pg_ctl").exists()), None)
    return _version([pg_ctl, "--version"]) if pg_ctl else "not found"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "?"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return found.group(1).strip() if found else platform.processor() or "?"


def _memory() -> str:
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return "?"
    return f"{kb / 2**20:.0f} GiB"


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    return head + (" with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict[str, str]:
    return {
        "machine": f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({_cpu_model()}), {_memory()}",
        "software": (
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {_postgres_version()}, "
            f"{_version(['redis-server', '--version'])}"
        ),
        "statekeel": f"commit {_commit()}",
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) if len(value) <= 12 else f"{len(value)} values"
    return str(value).replace("|", "\\|")


def _found_cell(row: dict[str, Any]) -> str:
    count = row.get("found_count", len(row.get("found", [])))
    return "nothing" if not count else f"**{count} problem(s)**"


def suite_table(rows: list[dict[str, Any]]) -> list[str]:
    """One Markdown table: backend, the figures every row has in order of appearance, found."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in HIDDEN and k not in columns]
    columns.sort(key=lambda c: {"scenario": 0, "seed": 2}.get(c, 1))  # what ran first, the seed last
    lines = ["| backend | " + " | ".join(columns) + " | found |", "|---" * (len(columns) + 2) + "|"]
    for row in sorted(rows, key=lambda r: (r["backend"], str(r.get("scenario", "")))):
        cells = [str(row.get(c, "")) if c == "seed" else _cell(row.get(c, "")) for c in columns]
        lines.append(f"| {row['backend']} | " + " | ".join(cells) + f" | {_found_cell(row)} |")
    return lines


def problems_list(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        found = row.get("found") or []
        if not found:
            continue
        where = " ".join([row["backend"], *(f"{k}={v}" for k, v in row.items() if k not in HIDDEN
                                            and isinstance(v, (str, bool)))])  # fmt: skip
        lines.append(f"- **{where}**:")
        lines += [f"  - {' '.join(str(p).split())[:400]}" for p in found[:MAX_LISTED]]
        extra = row.get("found_count", len(found)) - min(len(found), MAX_LISTED)
        if extra > 0:
            lines.append(f"  - … and {extra} more")
    return lines


def backend_summary(rows: list[dict[str, Any]]) -> list[str]:
    """Per backend and suite: tests, kills, seconds, problems."""
    totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        t = totals[(row["backend"], row["suite"])]
        t["tests"] += 1
        t["kills"] += row.get("kills", 0) or 0
        t["seconds"] += row.get("seconds", 0) or 0
        t["problems"] += row.get("found_count", len(row.get("found", [])))
    lines = ["| backend | suite | tests | kills | seconds | problems found |", "|---|---|---|---|---|---|"]
    for (backend, suite), t in sorted(totals.items()):
        found = f"**{t['problems']:.0f}**" if t["problems"] else "none"
        kills = f"{t['kills']:,.0f}" if t["kills"] else "—"
        lines.append(f"| {backend} | {suite} | {t['tests']:.0f} | {kills} | {t['seconds']:,.1f} | {found} |")
    return lines


def render(rows: list[dict[str, Any]], outcome: dict[str, Any], args: argparse.Namespace) -> str:
    mode = "long" if args.long else "short"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python scripts/reliability.py" + (" --long" if args.long else "")
    command += f" --backends {args.backends}" if args.backends else ""
    verdict = "all passed" if not (outcome["failures"] or outcome["errors"]) else (
        f"**{outcome['failures'] + outcome['errors']} failed**: " + ", ".join(f"`{t}`" for t in outcome["failed"])
    )
    out = [
        "# Reliability",
        "",
        "Generated by `scripts/reliability.py` from what each test of `tests/reliability/` reported; "
        "do not edit by hand. What is promised, and how (checksums, doctor, failed calls, bad input, the "
        "defects fixed and their regression tests): [reliability-guarantees.md](reliability-guarantees.md). "
        "The short mode runs in CI with every `pytest` run (tests/ is the "
        "testpath); the long mode (`--long`, `STATEKEEL_RELIABILITY=long`) raises every count and is run "
        "by hand.",
        "",
        "    python scripts/reliability.py                 # short mode, rewrites this file",
        "    python scripts/reliability.py --long          # long mode",
        "    python scripts/reliability.py --backends sqlite,files",
        "",
        f"## This run: {mode} mode, {now}",
        "",
        f"`{command}` — pytest: {outcome['tests']} tests, {outcome['skipped']} skipped, "
        f"{outcome['time']:,.0f} s; {verdict}.",
        "",
        *[f"- {k}: {v}" for k, v in machine().items()],
        "",
        "## Per backend",
        "",
        *backend_summary(rows),
    ]
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_suite[row["suite"]].append(row)
    for suite, suite_rows in sorted(by_suite.items()):
        out += ["", f"## {suite[:1].upper()}{suite[1:]}", ""]
        if suite in SUITE_NOTES:
            out += [SUITE_NOTES[suite], ""]
        out += suite_table(suite_rows)
        found = problems_list(suite_rows)
        out += ["", "What was found:", "", *found] if found else ["", "Nothing was found."]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="statekeel-reliability-") as tmp:
        report, junit = Path(tmp) / "report.jsonl", Path(tmp) / "junit.xml"
        code = run_suite(args, extra, report, junit)
        text = render(read_rows(report), pytest_outcome(junit), args)
    if args.no_docs:
        print(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
