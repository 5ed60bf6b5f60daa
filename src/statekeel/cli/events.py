"""``statekeel events …``: read an event stream and its consumers' positions."""

from __future__ import annotations

from typing import Any

import click

from statekeel import Event

from ._output import emit_json, emit_table, fmt_time, json_option, short_json, store_from


def event_dict(event: Event) -> dict[str, Any]:
    return {"seq": event.seq, "type": event.type, "time": event.time, "agent": event.agent, "data": event.data}


@click.group("events")
def group() -> None:
    """Read append-only event streams.

    Example: statekeel events list orders --type task_created
    """


@group.command("list")
@click.argument("stream")
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Only events of this type (repeatable).")
@click.option("--from", "start", type=click.IntRange(1), default=1, show_default=True, metavar="SEQ",
              help="First sequence number to read.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="At most this many events.")
@click.option("--last", type=click.IntRange(1), help="Only the newest N matching events.")
@json_option
@click.pass_context
def list_cmd(
    ctx: click.Context, stream: str, types: tuple[str, ...], start: int, limit: int, last: int | None,
    as_json: bool,
) -> None:
    """List a stream's events, oldest first.

    Example: statekeel events list orders --type task_created --from 1000 --json
    """
    s = store_from(ctx).events(stream)
    found = s.read(start, type=types or None, limit=None if last else limit, last=last)
    more = found and not last and len(found) == limit and found[-1].seq < s.last_seq
    following = found[-1].seq + 1 if more else None
    if as_json:  # `next` is the --from of the next page
        emit_json({"items": [event_dict(e) for e in found], "next": following})
        return
    rows = ([str(e.seq), fmt_time(e.time), e.type, e.agent or "", short_json(e.data, 80)] for e in found)
    footer = f"more: --from {following}" if following else None
    emit_table(f"events of {stream}", ["seq", "time", "type", "agent", "data"], rows, footer=footer)
