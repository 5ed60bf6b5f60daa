"""``statekeel notes …``: the shared notes of a session (``session.notes``), read-only.

Notes are one record per author (an observer's findings, a planner's step); reading
them here never opens or re-activates the session.
"""

from __future__ import annotations

import click

from statekeel import NotFoundError

from ._output import duration_option, emit_json, emit_table, fmt_time, json_option, read_session, short_json, store_from
from .sessions import note_dict

__all__ = ["group"]


@click.group("notes")
def group() -> None:
    """Read the notes agents leave in a session (one per author).

    Example: statekeel notes list support-42
    """


@group.command("list")
@click.argument("session_id")
@duration_option("--max-age", help="Mark notes older than this stale (e.g. 5m).")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, session_id: str, max_age: float | None, as_json: bool) -> None:
    """List every author's note in a session, in author order.

    Example: statekeel notes list support-42 --max-age 5m --json
    """
    notes = read_session(store_from(ctx, must_exist=True), session_id).notes.all(max_age)
    if as_json:
        emit_json({"items": [note_dict(n) for n in notes.values()], "next": None})
        return
    rows = ([n.author, fmt_time(n.written_at), "stale" if n.stale else "", short_json(n.value, 120)]
            for n in notes.values())
    emit_table(f"notes of {session_id}", ["author", "written", "", "note"], rows, whole=("author",))


@group.command("show")
@click.argument("session_id")
@click.argument("author")
@duration_option("--max-age", help="Say whether the note is older than this (e.g. 5m).")
@json_option
@click.pass_context
def show(ctx: click.Context, session_id: str, author: str, max_age: float | None, as_json: bool) -> None:
    """Print one author's note as JSON (exit code 1 if that author wrote none).

    Example: statekeel notes show support-42 observer --max-age 5m
    """
    note = read_session(store_from(ctx, must_exist=True), session_id).notes.read(author, max_age)
    if not note.ready:
        raise NotFoundError(f"{author!r} has written no note in session {session_id!r}; "
                            f"see `statekeel notes list {session_id}`")
    if as_json:
        emit_json(note_dict(note))
        return
    emit_json(note.value)
    stale = f", stale (older than {max_age:g}s)" if note.stale and max_age is not None else ""
    click.echo(f"written {fmt_time(note.written_at)} ({note.age or 0:.0f}s ago){stale}", err=True)
