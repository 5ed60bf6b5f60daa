"""What every CLI command shares: the store handle, ``--json``, tables, durations.

Commands never print with ``print``: machine output goes through
:func:`emit_json`, human output through :func:`console` (rich), so ``--json``
output is always exactly one JSON document on stdout.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

import statekeel
from statekeel.backends import parse
from statekeel.features._duration import seconds

from ._values import Unimportable

__all__ = [
    "CliState",
    "accept_url_everywhere",
    "console",
    "counted",
    "duration_option",
    "emit_json",
    "emit_table",
    "fmt_time",
    "json_option",
    "missing_sqlite_file",
    "read_session",
    "short_json",
    "store_from",
    "to_jsonable",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class CliState:
    """``ctx.obj`` of every command: the URL chosen on the main group."""

    url: str


def _url_after_subcommand(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(CliState).url = value


def accept_url_everywhere(cmd: click.Command) -> None:
    """Give every command under ``cmd`` a ``--url`` of its own, so ``statekeel sessions list
    --url X`` works as ``statekeel --url X sessions list`` does (it wins over ``$STATEKEEL_URL``).

    Commands with a ``--url`` of their own (``demo``) keep it.
    """
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            accept_url_everywhere(sub)
    if any("--url" in getattr(p, "opts", ()) for p in cmd.params):
        return
    cmd.params.append(click.Option(
        ["--url", "_url_after"], metavar="URL", expose_value=False, callback=_url_after_subcommand,
        help="Store to use (as `statekeel --url`; default $STATEKEEL_URL).",
    ))


def chosen_url(ctx: click.Context, url: str | None = None) -> str:
    """``url`` when given, else ``--url`` (before or after the subcommand), else ``$STATEKEEL_URL``."""
    if url:
        return url
    state = ctx.find_object(CliState)
    return state.url if state else os.environ.get("STATEKEEL_URL") or statekeel.DEFAULT_URL


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite store that does not exist yet (opening it would create it)."""
    parsed = parse(url)
    if parsed.scheme != "sqlite":
        return None
    path = parsed.sqlite_path()
    return None if path == ":memory:" or os.path.exists(path) else path


def read_session(store: statekeel.Store, session_id: str) -> statekeel.Session:
    """A handle on an existing session that writes nothing; NotFoundError if missing."""
    found = store.find_session(session_id)
    if found is None:
        raise statekeel.NotFoundError(
            f"no session {session_id!r} in {store.url} (or it expired); see `statekeel sessions list`"
        )
    return found


def store_from(ctx: click.Context, *, migrate: bool = True, must_exist: bool = False) -> statekeel.Store:
    """Open the store named by ``--url``; it closes when the command ends.

    ``must_exist``: a read-only command refuses a SQLite file that is not there
    (opening it would create an empty store and hide a wrong URL or directory).
    """
    url = chosen_url(ctx)
    missing = missing_sqlite_file(url) if must_exist else None
    if missing:
        raise click.ClickException(f"no store at {missing}; check --url (or $STATEKEEL_URL) and the directory")
    store = statekeel.open(url, migrate=migrate, encryption=encryption_from_env())
    ctx.call_on_close(store.close)
    return store


def encryption_from_env() -> statekeel.Encryption | None:
    """Encryption is on for the CLI when ``STATEKEEL_MASTER_KEY`` is set
    (keystore: ``STATEKEEL_KEYSTORE_URL``, default the store itself)."""
    if not os.environ.get("STATEKEEL_MASTER_KEY"):
        return None
    return statekeel.Encryption("env:STATEKEEL_MASTER_KEY", os.environ.get("STATEKEEL_KEYSTORE_URL"))


def json_option(fn: F) -> F:
    """The shared ``--json`` flag; the command receives it as ``as_json``."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON instead of text (for scripts)."
    )(fn)


def _to_seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return seconds(float(value) if value.replace(".", "", 1).isdigit() else value, "duration")
    except statekeel.InvalidInputError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def duration_option(*decls: str, help: str) -> Callable[[F], F]:  # noqa: A002 - click's name
    """An option taking ``90s``, ``5m``, ``2h``, ``7d`` or seconds; the command gets seconds."""
    return click.option(*decls, metavar="DURATION", callback=_to_seconds, help=help)


# -- rendering --------------------------------------------------------------
PIPED_WIDTH = 400
"""Columns for output that is not a terminal (piped, redirected): wide enough that a row stays
one line for ``grep`` and ``cut``, instead of rich's default of 80. ``$COLUMNS`` still wins."""


def console() -> Console:
    """A rich console on the current stdout (so click's test runner captures it)."""
    out = Console(soft_wrap=False, highlight=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out = Console(soft_wrap=False, highlight=False, width=PIPED_WIDTH)
    return out


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)  # UUID, Decimal, Enum: their text form


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (datetimes as ISO text, bytes as base64)."""
    return json.loads(json.dumps(value, default=_default, ensure_ascii=False))


def emit_json(value: Any) -> None:
    """Print ``value`` as one indented JSON document."""
    click.echo(json.dumps(value, default=_default, ensure_ascii=False, indent=2))


def short_json(value: Any, width: int = 60) -> str:
    """Compact JSON of ``value``, cut to ``width`` characters."""
    if isinstance(value, Unimportable):  # its class path, then its stored JSON
        value = str(value)
    text = value if isinstance(value, str) else json.dumps(value, default=_default, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def counted(n: int, one: str, many: str | None = None) -> str:
    """``1 entry``, ``3 entries``: a count with its noun, in English."""
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def fmt_time(when: dt.datetime | None, never: str = "never") -> str:
    """``2026-11-21 22:15:03Z``, or ``never`` for None."""
    return never if when is None else when.strftime("%Y-%m-%d %H:%M:%SZ")


def emit_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], *, footer: str | None = None,
    whole: Sequence[str] = ("id",),
) -> None:
    """Print a rich table; ``footer`` goes underneath (e.g. the next-page hint).

    Columns named in ``whole`` (ids, which people copy) never wrap; the others fold.
    """
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
        if name in whole:
            table.add_column(name, no_wrap=True, overflow="ignore")
        else:
            table.add_column(name, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*row)
        count += 1
    out = console()
    if count:
        out.print(table)
    else:
        out.print(f"{title}: nothing found")
    if footer:
        out.print(footer, style="dim")
