"""``statekeel gc``: apply retention caps store-wide and reclaim the space.

Runs :func:`statekeel.features.retention.gc` (every session's caps, then every
expired record — deleted sessions among them — is purged) with a progress bar,
then, on SQLite, ``VACUUM`` gives the freed pages back to the file system and the
write-ahead log is truncated; the bytes before and after are reported. Other
backends reclaim space themselves (PostgreSQL autovacuum, Redis on delete, the
files backend when a file is removed).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Any

import click

from statekeel.backends._url import split_url
from statekeel.features.retention import count_sessions, gc as run_gc

from ._output import CliState, emit_json, json_option, store_from

__all__ = ["gc"]


def _sqlite_path(ctx: click.Context) -> str | None:
    state = ctx.find_object(CliState)
    if state is None:
        return None
    parsed = split_url(state.url)
    if parsed.scheme != "sqlite" or parsed.sqlite_path() == ":memory:":
        return None
    return parsed.sqlite_path()


def _bytes(path: str) -> int:
    """The database file and its write-ahead log."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _vacuum(path: str) -> None:
    """Give SQLite's free pages back (the store's own connection is idle meanwhile)."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@click.command("gc")
@click.option("--vacuum/--no-vacuum", default=True, show_default=True,
              help="SQLite: VACUUM after purging, so the file shrinks (rewrites it; takes a lock briefly).")
@json_option
@click.pass_context
def gc(ctx: click.Context, vacuum: bool, as_json: bool) -> None:
    """Apply retention caps to every session, purge expired and deleted data, reclaim space.

    Caps: store.set_retention(statekeel.Retention(messages=..., bytes=..., checkpoints=...)) or
    per session (store.session(id, retention=...)).

    Example: statekeel --url sqlite:///agent.db gc
    """
    store = store_from(ctx)
    path = _sqlite_path(ctx)
    before = _bytes(path) if path else None
    total = count_sessions(store)
    bar: Any = click.progressbar(length=total, label="sessions", file=sys.stderr)
    with bar:
        report = run_gc(store, progress=lambda _sid: bar.update(1))
    if path and vacuum:
        _vacuum(path)
    after = _bytes(path) if path else None
    out: dict[str, Any] = {
        "sessions": report.sessions, "messages_dropped": report.messages_dropped,
        "checkpoints_dropped": report.checkpoints_dropped, "purged": report.purged,
        "seconds": round(report.seconds, 3), "bytes_before": before, "bytes_after": after,
    }
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"{report.sessions} sessions: {report.messages_dropped} messages and {report.checkpoints_dropped} "
        f"checkpoints dropped by retention caps; {report.purged} expired records/logs purged"
    )
    if before is not None and after is not None:
        click.echo(f"bytes: {before:,} before, {after:,} after ({before - after:,} reclaimed)")
