"""``statekeel decisions …``: list decisions (the incomplete ones first of all) and resolve them.

An *incomplete* decision was written before its action ran and never got an
outcome: the process died inside ``with session.decide(...)``. That is what
recovery looks at; ``resolve`` closes one after a human has checked it.
"""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from statekeel import Decision

from ._output import emit_json, emit_table, fmt_time, json_option, short_json, store_from


def decision_dict(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id, "session": d.session, "decision": d.decision, "rationale": d.rationale,
        "action": d.action, "status": d.status, "outcome": d.outcome, "error": d.error,
        "created_at": d.created_at, "resolved_at": d.resolved_at, "resolved_by": d.resolved_by,
    }


def _current_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _outcome(text: str) -> Any:
    """JSON when it parses (``{"refund": 17}``, ``42``), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.group("decisions")
def group() -> None:
    """The durable decision log: what agents decided, and which never finished.

    Example: statekeel decisions list --incomplete
    """


@group.command("list")
@click.option("--incomplete", is_flag=True, help="Only decisions without an outcome (what recovery looks at).")
@click.option("--session", "session_id", metavar="SESSION", help="Only decisions of this session.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Page size.")
@click.option("--after", metavar="CURSOR", help="Cursor printed by the previous page.")
@json_option
@click.pass_context
def list_cmd(
    ctx: click.Context, incomplete: bool, session_id: str | None, limit: int, after: str | None, as_json: bool
) -> None:
    """List decisions in (session, time) order, a page at a time.

    Example: statekeel decisions list --incomplete --session support-42 --json
    """
    page = store_from(ctx).decisions(incomplete=incomplete, session=session_id, after=after, limit=limit)
    if as_json:
        emit_json({"items": [decision_dict(d) for d in page], "next": page.next})
        return
    rows = (
        [d.id, d.status, fmt_time(d.created_at), short_json(d.decision, 40), short_json(d.action, 30),
         short_json(d.error or d.outcome, 30) if d.status != "pending" else ""]
        for d in page
    )
    footer = f"next page: --after {page.next}" if page.next else None
    title = "incomplete decisions" if incomplete else "decisions"
    emit_table(title, ["id", "status", "decided", "decision", "action", "outcome"], rows, footer=footer)


@group.command("resolve")
@click.argument("decision_id", metavar="ID")
@click.argument("outcome", metavar="OUTCOME")
@click.option("--by", metavar="WHO", help="Who resolved it (default: the current user).")
@json_option
@click.pass_context
def resolve(ctx: click.Context, decision_id: str, outcome: str, by: str | None, as_json: bool) -> None:
    """Close an incomplete decision with OUTCOME (JSON, or plain text).

    Example: statekeel decisions resolve support-42:0006123ab4c5d6e7f8a9b 'refund confirmed' --by alice
    """
    d = store_from(ctx).resolve_decision(decision_id, _outcome(outcome), by=by or _current_user())
    if as_json:
        emit_json(decision_dict(d))
        return
    click.echo(f"resolved {d.id}: {short_json(d.outcome)} (by {d.resolved_by} at {fmt_time(d.resolved_at)})")
