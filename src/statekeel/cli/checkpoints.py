"""``statekeel checkpoints …``: list a session's checkpoints, diff and restore them.

Listing and diffing never change the session (it is read, not opened);
``restore`` rolls its state back exactly as ``session.restore(cp)`` does.
"""

from __future__ import annotations

from typing import Any

import click

from statekeel import Checkpoint, Store
from statekeel.features import checkpoints as _checkpoints

from ._output import emit_json, emit_table, fmt_time, json_option, read_session, short_json, store_from


def checkpoint_dict(cp: Checkpoint) -> dict[str, Any]:
    return {
        "id": cp.id, "label": cp.label, "created_at": cp.created_at, "parent": cp.parent,
        "history_seq": cp.history_seq, "full": cp.full, "keys": cp.keys, "stored_keys": cp.stored_keys,
    }


_ABSENT = object()


def field_changes(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """The changed leaves of a value, as (dotted path, old, new): ``customer.address.city``.

    Objects are compared key by key and lists of equal length item by item, so a table
    shows the field that changed instead of two long values cut before it."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{k}" if path else str(k)
            out += field_changes(before.get(k, _ABSENT), after.get(k, _ABSENT), sub)
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and before:
        return [c for i, (a, b) in enumerate(zip(before, after)) for c in field_changes(a, b, f"{path}[{i}]")]
    return [] if before == after else [(path, before, after)]


def _shown(value: Any, width: int) -> str:
    return "(absent)" if value is _ABSENT else short_json(value, width)


def _plain(value: Any) -> Any:
    return None if value is _ABSENT else value


def parse_ref(text: str) -> int | str:
    """``7`` is checkpoint id 7; anything else is a label (the newest checkpoint with it)."""
    return int(text) if text.isdigit() else text


@click.group("checkpoints")
def group() -> None:
    """List, diff and restore a session's checkpoints.

    Example: statekeel checkpoints list support-42
    """


@group.command("list")
@click.argument("session_id")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, session_id: str, as_json: bool) -> None:
    """List a session's checkpoints, oldest first.

    Example: statekeel checkpoints list support-42 --json
    """
    found = read_session(store_from(ctx), session_id).checkpoints()
    if as_json:
        emit_json({"items": [checkpoint_dict(c) for c in found], "next": None})  # one page: all of them
        return
    rows = (
        [str(c.id), c.label or "", fmt_time(c.created_at), "" if c.parent is None else str(c.parent),
         str(c.history_seq), str(c.keys), "full" if c.full else f"delta ({c.stored_keys} keys)"]
        for c in found
    )
    emit_table(
        f"checkpoints of {session_id}", ["id", "label", "time", "parent", "history", "keys", "stored"], rows
    )


@group.command("diff")
@click.argument("session_id")
@click.argument("cp_a", metavar="CP")
@click.argument("cp_b", metavar="[OTHER_CP]", required=False)
@json_option
@click.pass_context
def diff(ctx: click.Context, session_id: str, cp_a: str, cp_b: str | None, as_json: bool) -> None:
    """Show what changed from checkpoint CP to OTHER_CP (default: to the current state).

    CP is an id or a label. Example: statekeel checkpoints diff support-42 before-tool
    """
    session = read_session(store_from(ctx), session_id)
    d = session.diff(parse_ref(cp_a), None if cp_b is None else parse_ref(cp_b))
    fields = [(k, *c) for k, (a, b) in d.changed.items() for c in field_changes(a, b)]
    if as_json:
        emit_json({
            "added": d.added, "removed": d.removed,
            "changed": {k: {"from": a, "to": b} for k, (a, b) in d.changed.items()},
            "fields": [{"key": k, "path": p, "from": _plain(a), "to": _plain(b)} for k, p, a, b in fields],
            "history_from": d.history_from, "history_to": d.history_to,
        })
        return
    rows = [
        *(["added", k, short_json(v)] for k, v in d.added.items()),
        *(["removed", k, short_json(v)] for k, v in d.removed.items()),
        *(["changed", k + ("" if not p else p if p.startswith("[") else f".{p}"), f"{_shown(a, 60)} -> {_shown(b, 60)}"] for k, p, a, b in fields),
        ["history", "", f"seq {d.history_from} -> {d.history_to}"],
    ]
    emit_table(f"diff of {session_id}: {cp_a} -> {cp_b or 'now'}", ["change", "key", "value"], rows)


@group.command("restore")
@click.argument("session_id")
@click.argument("cp", metavar="CP")
@json_option
@click.pass_context
def restore(ctx: click.Context, session_id: str, cp: str, as_json: bool) -> None:
    """Roll a session's state back to checkpoint CP (an id or a label).

    History appended after it is hidden, not deleted (`sessions history` no
    longer shows it; the library's history(include_hidden=True) still does).

    Example: statekeel checkpoints restore support-42 before-tool
    """
    store: Store = store_from(ctx)
    session = read_session(store, session_id)
    done = session.restore(parse_ref(cp))
    if as_json:
        emit_json({**checkpoint_dict(done), "hidden": session.hidden_ranges()})
        return
    click.echo(
        f"restored {session_id} to checkpoint {done.id}{f' ({done.label})' if done.label else ''}: "
        f"{done.keys} state keys, history up to seq {done.history_seq}"
    )
