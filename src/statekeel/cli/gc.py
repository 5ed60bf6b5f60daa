"""``statekeel gc``: apply retention caps store-wide and reclaim the space.

Runs :func:`statekeel.features.retention.gc` (every session's caps, the maintenance
participants' — LangGraph threads —, then every expired record — deleted sessions among
them — is purged) with a progress bar,
then a backend that can give freed space back (the ``SupportsReclaim`` capability:
SQLite, by an incremental vacuum) does, and the bytes before and after are reported.
Other backends reclaim space themselves (PostgreSQL autovacuum, Redis on delete,
the files backend when a file is removed).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from statekeel.features.memory.memory import forget_by_policy
from statekeel.features.retention import count_sessions, gc as run_gc

from statekeel.protocol.capabilities import SupportsReclaim

from ._output import emit_json, json_option, store_from

__all__ = ["gc"]


@click.command("gc")
@click.option("--vacuum/--no-vacuum", default=True, show_default=True,
              help="Give freed space back to the file system after purging (SQLite: incremental vacuum).")
@json_option
@click.pass_context
def gc(ctx: click.Context, vacuum: bool, as_json: bool) -> None:
    """Apply retention caps to every session (and the checkpoint cap to LangGraph threads), purge
    expired and deleted data, apply memory forgetting policies, reclaim space.

    Caps: store.set_retention(statekeel.Retention(messages=..., bytes=..., checkpoints=...)) or
    per session (store.session(id, retention=...)). Memory policies: statekeel memory policy NS
    --inactive 90d --keep 1000 (or store.memory(ns).set_policy(...)).

    Example: statekeel --url sqlite:///agent.db gc
    """
    store = store_from(ctx)
    total = count_sessions(store)
    bar: Any = click.progressbar(length=total, label="sessions", file=sys.stderr)
    with bar:
        report = run_gc(store, progress=lambda _sid: bar.update(1))
    forgotten = forget_by_policy(store)  # memory forgetting policies (statekeel memory policy)
    before = after = None
    if vacuum and isinstance(store.storage, SupportsReclaim):
        before, after = store.storage.reclaim()
    out: dict[str, Any] = {
        "sessions": report.sessions, "messages_dropped": report.messages_dropped,
        "checkpoints_dropped": report.checkpoints_dropped, "purged": report.purged,
        "seconds": round(report.seconds, 3), "bytes_before": before, "bytes_after": after,
        "memories_forgotten": {"/".join(ns): n for ns, n in forgotten.items()},
        "participants": report.participants,
    }
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"{report.sessions} sessions: {report.messages_dropped} messages and {report.checkpoints_dropped} "
        f"checkpoints dropped by retention caps; {report.purged} expired records/logs purged"
    )
    for name, n in report.participants.items():
        click.echo(f"{name}: {n} dropped by retention caps")
    for ns, n in forgotten.items():
        click.echo(f"memory {'/'.join(ns)}: {n} forgotten by its policy")
    if before is not None and after is not None:
        click.echo(f"bytes: {before:,} before, {after:,} after ({before - after:,} reclaimed)")
