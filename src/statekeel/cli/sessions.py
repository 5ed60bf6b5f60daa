"""``statekeel sessions …``: list sessions, show one, read its history; complete, delete or
mark stale ones crashed.

Inspection never changes a session: it reads the session record directly
instead of ``store.session(id)``, which would create a missing session and
set a crashed one active again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from statekeel import NoteRead, Session, SessionInfo, Store, StoreError
from statekeel.core import layout
from statekeel.models import SESSION_STATUSES, Message, to_datetime

from ._output import (
    duration_option, emit_json, emit_table, fmt_time, json_option, read_session, short_json, store_from,
)
from ._values import decode_lenient, is_unimportable_class, lenient_items
from .checkpoints import checkpoint_dict
from .decisions import decision_dict

__all__ = ["group", "info_dict", "note_dict", "read_session", "silent_for"]

SHOWN = 100
"""How many state keys, decisions and checkpoints `sessions show` lists (the newest checkpoints)."""


def info_dict(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id, "user": info.user, "status": info.status,
        "created_at": info.created_at, "updated_at": info.updated_at,
        "expires_at": info.expires_at, "ttl": info.ttl,
    }


def note_dict(n: NoteRead) -> dict[str, Any]:
    return {"author": n.author, "ready": n.ready, "value": n.value, "written_at": n.written_at,
            "age": n.age, "stale": n.stale}


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
    """List sessions, read their history, complete, delete or mark stale ones crashed.

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
    """Show a session: status, timestamps, message count, state, notes, decisions and checkpoints.

    Example: statekeel sessions show support-42
    """
    store = store_from(ctx, must_exist=True)
    s = read_session(store, session_id)
    info, count = s.info(), len(s)
    items = list(lenient_items(store, s.state, "", None, SHOWN))
    notes = s.notes.all()
    decisions = list(store.decisions(session=session_id, limit=SHOWN))
    checkpoints = s.checkpoints()[-SHOWN:]
    if as_json:
        emit_json({
            **info_dict(info), "messages": count, "state": {i.key: i.value for i in items},
            "notes": {a: note_dict(n) for a, n in notes.items()},
            "decisions": [decision_dict(d) for d in decisions],
            "checkpoints": [checkpoint_dict(c) for c in checkpoints],
        })
        return
    rows = [
        ["id", info.id], ["user", info.user or ""], ["status", info.status],
        ["created", fmt_time(info.created_at)],
        ["updated", f"{fmt_time(info.updated_at)} ({silent_for(info)} ago)"],
        ["expires", fmt_time(info.expires_at)], ["messages", str(count)],
        *([f"state {i.key}", f"{short_json(i.value)} (v{i.version})"] for i in items),
        *([f"note {a}", f"{short_json(n.value)} ({fmt_time(n.written_at)})"] for a, n in notes.items()),
        *([f"decision {d.id}", f"{d.status}: {short_json(d.decision)}"] for d in decisions),
        *([f"checkpoint {c.id}", f"{c.label or ''} ({fmt_time(c.created_at)}, {c.keys} keys)"] for c in checkpoints),
    ]
    emit_table(f"session {info.id}", ["field", "value"], rows, whole=("field",))


@group.command("mark-crashed")
@duration_option("--stale-after", help="How long an active session has been silent (e.g. 5m). Required.")
@click.option("--user", help="Only sessions of this user.")
@json_option
@click.pass_context
def mark_crashed(ctx: click.Context, stale_after: float | None, user: str | None, as_json: bool) -> None:
    """Mark active sessions silent for --stale-after as crashed (agents that died).

    A session with a live lease or a running decision is alive however long it is
    silent, and a waiting one waits for its user: neither is touched.

    Example: statekeel sessions mark-crashed --stale-after 10m
    """
    if stale_after is None:
        raise click.UsageError("--stale-after is required: how long a dead agent's session has been silent")
    marked = store_from(ctx, must_exist=True).mark_stale_crashed(stale_after, user=user)
    if as_json:
        emit_json({"items": [info_dict(i) for i in marked], "next": None})
        return
    rows = ([i.id, i.user or "", fmt_time(i.updated_at)] for i in marked)
    emit_table("sessions marked crashed", ["id", "user", "last write"], rows)


@group.command("complete")
@click.argument("session_id")
@json_option
@click.pass_context
def complete(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """Mark a session completed (its conversation is over; its data is kept).

    Example: statekeel sessions complete support-42
    """
    info = read_session(store_from(ctx, must_exist=True), session_id).complete()
    if as_json:
        emit_json(info_dict(info))
        return
    click.echo(f"session {info.id} is {info.status}")


@group.command("delete")
@click.argument("session_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, session_id: str, yes: bool) -> None:
    """Delete a session and everything in it: history, state, notes, decisions, checkpoints.

    Exit code 1 if there was no such session. Asks for confirmation unless --yes.

    Example: statekeel sessions delete support-42 --yes
    """
    store = store_from(ctx, must_exist=True)
    read_session(store, session_id)  # a clear error before asking
    if not yes and not click.confirm(f"delete session {session_id!r} and all its data?", default=False):
        raise click.ClickException("nothing deleted")
    if not store.delete_session(session_id):
        read_session(store, session_id)  # deleted meanwhile by someone else: the same error
    click.echo(f"deleted session {session_id}")


@group.command("history")
@click.argument("session_id")
@click.option("--last", type=click.IntRange(0), help="Only the newest N messages (reads only those).")
@json_option
@click.pass_context
def history(ctx: click.Context, session_id: str, last: int | None, as_json: bool) -> None:
    """Print a session's messages, oldest first.

    Example: statekeel sessions history support-42 --last 20
    """
    store = store_from(ctx, must_exist=True)
    messages = _messages(store, read_session(store, session_id), last)
    if as_json:
        items = [{"seq": m.seq, "created_at": m.created_at, "value": m.value} for m in messages]
        emit_json({"items": items, "next": None})  # one page: the whole history, or --last N
        return
    rows = ([str(m.seq), fmt_time(m.created_at), *_role_and_text(m.value)] for m in messages)
    emit_table(f"history of {session_id}", ["seq", "time", "role", "content"], rows)


def _messages(store: Store, s: Session, last: int | None) -> list[Message]:
    """``s.messages(last)``; when a message holds an object whose class does not import here
    (the agent's own dataclass), the same entries are read again and shown leniently."""
    try:
        return s.messages(last)
    except StoreError as exc:
        if not is_unimportable_class(exc):
            raise
    entries = s._entries(last, 1, None, s._view(False))  # the hidden ranges messages() honours
    log = layout.history_log(s.id)
    return sorted((Message(e.seq, decode_lenient(store, e.data, e.codec, log), to_datetime(e.created_at))  # type: ignore[arg-type]
                   for e in entries), key=lambda m: m.seq)


def _role_and_text(value: Any) -> list[str]:
    """Chat messages show role and content (and the tools they call); anything else shows as JSON."""
    if not (isinstance(value, dict) and isinstance(value.get("role"), str)):
        return ["", short_json(value, 200)]
    parts = [] if value.get("content") in (None, "", []) else [short_json(value.get("content"), 200)]
    calls = value.get("tool_calls")
    if isinstance(calls, list):
        parts += [_tool_call(c) for c in calls]
    return [value["role"], " ".join(parts) if parts else short_json(value, 200)]


def _tool_call(call: Any) -> str:
    """``→ get_order({"order_id": 991})`` for OpenAI-style and LangChain-style tool calls."""
    if not isinstance(call, dict):
        return f"→ {short_json(call, 100)}"
    fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else call
    args = fn.get("arguments", fn.get("args", fn.get("input", "")))
    return f"→ {fn.get('name', '?')}({short_json(args, 100)})"
