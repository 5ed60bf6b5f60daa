"""``statekeel sessions …``: list sessions, show one, read its history.

Inspection never changes a session: it reads the session record directly
instead of ``store.session(id)``, which would create a missing session and
set a crashed one active again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from statekeel import NotFoundError, Session, SessionInfo, Store
from statekeel.models import SESSION_STATUSES

from ._output import duration_option, emit_json, emit_table, fmt_time, json_option, short_json, store_from


def read_session(store: Store, session_id: str) -> Session:
    """A handle on an existing session that writes nothing; NotFoundError if missing."""
    found = store.find_session(session_id)
    if found is None:
        raise NotFoundError(
            f"no session {session_id!r} in {store.url} (or it expired); see `statekeel sessions list`"
        )
    return found


def info_dict(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id, "user": info.user, "status": info.status,
        "created_at": info.created_at, "updated_at": info.updated_at,
        "expires_at": info.expires_at, "ttl": info.ttl,
    }


def silent_for(info: SessionInfo) -> str:
    """How long since the session's last write or heartbeat, e.g. ``3m12s``."""
    secs = int((dt.datetime.now(dt.timezone.utc) - info.updated_at).total_seconds())
    days, rest = divmod(max(secs, 0), 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    parts = [f"{days}d" * bool(days), f"{hours}h" * bool(hours), f"{mins}m" * bool(mins), f"{secs}s"]
    return "".join(p for p in parts if p)


@click.group("sessions")
def group() -> None:
    """List sessions and read their history.

    Example: statekeel sessions list --status active --stale-after 5m
    """


@group.command("list")
@click.option("--status", type=click.Choice(SESSION_STATUSES), help="Only sessions with this status.")
@click.option("--user", help="Only sessions of this user.")
@duration_option("--stale-after", help="Only active sessions silent this long (e.g. 5m).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Page size.")
@click.option("--after", metavar="CURSOR", help="Cursor printed by the previous page.")
@json_option
@click.pass_context
def list_cmd(
    ctx: click.Context, status: Any, user: str | None, stale_after: float | None,
    limit: int, after: str | None, as_json: bool,
) -> None:
    """List sessions in id order, a page at a time.

    Example: statekeel sessions list --user u-7 --limit 20 --json
    """
    store = store_from(ctx, must_exist=True)
    page = store.sessions(status=status, user=user, stale_after=stale_after, after=after, limit=limit)
    if as_json:
        emit_json({"items": [info_dict(i) for i in page], "next": page.next})
        return
    rows = (
        [i.id, i.user or "", i.status, fmt_time(i.updated_at), silent_for(i), fmt_time(i.expires_at)]
        for i in page
    )
    footer = f"next page: --after {page.next}" if page.next else None
    emit_table("sessions", ["id", "user", "status", "updated", "silent for", "expires"], rows, footer=footer)


@group.command("show")
@click.argument("session_id")
@json_option
@click.pass_context
def show(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """Show a session: status, timestamps, message count and state.

    Example: statekeel sessions show support-42
    """
    s = read_session(store_from(ctx, must_exist=True), session_id)
    info, count = s.info(), len(s)
    items = list(s.state.items(limit=100))
    if as_json:
        emit_json({**info_dict(info), "messages": count, "state": {i.key: i.value for i in items}})
        return
    rows = [
        ["id", info.id], ["user", info.user or ""], ["status", info.status],
        ["created", fmt_time(info.created_at)],
        ["updated", f"{fmt_time(info.updated_at)} ({silent_for(info)} ago)"],
        ["expires", fmt_time(info.expires_at)], ["messages", str(count)],
        *([f"state {i.key}", f"{short_json(i.value)} (v{i.version})"] for i in items),
    ]
    emit_table(f"session {info.id}", ["field", "value"], rows)


@group.command("history")
@click.argument("session_id")
@click.option("--last", type=click.IntRange(0), help="Only the newest N messages (reads only those).")
@json_option
@click.pass_context
def history(ctx: click.Context, session_id: str, last: int | None, as_json: bool) -> None:
    """Print a session's messages, oldest first.

    Example: statekeel sessions history support-42 --last 20
    """
    messages = read_session(store_from(ctx, must_exist=True), session_id).messages(last)
    if as_json:
        emit_json([{"seq": m.seq, "created_at": m.created_at, "value": m.value} for m in messages])
        return
    rows = ([str(m.seq), fmt_time(m.created_at), *_role_and_text(m.value)] for m in messages)
    emit_table(f"history of {session_id}", ["seq", "time", "role", "content"], rows)


def _role_and_text(value: Any) -> list[str]:
    """Chat messages show role and content; anything else shows as JSON."""
    if isinstance(value, dict) and isinstance(value.get("role"), str) and "content" in value:
        return [value["role"], short_json(value["content"], 200)]
    return ["", short_json(value, 200)]
