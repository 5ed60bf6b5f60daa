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

__all__ = [
    "CliState",
    "console",
    "duration_option",
    "emit_json",
    "emit_table",
    "fmt_time",
    "json_option",
    "missing_sqlite_file",
    "short_json",
    "store_from",
    "to_jsonable",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class CliState:
    """``ctx.obj`` of every command: the URL chosen on the main group."""

    url: str


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite store that does not exist yet (opening it would create it)."""
    parsed = parse(url)
    if parsed.scheme != "sqlite":
        return None
    path = parsed.sqlite_path()
    return None if path == ":memory:" or os.path.exists(path) else path


def store_from(ctx: click.Context, *, migrate: bool = True, must_exist: bool = False) -> statekeel.Store:
    """Open the store named by ``--url``; it closes when the command ends.

    ``must_exist``: a read-only command refuses a SQLite file that is not there
    (opening it would create an empty store and hide a wrong URL or directory).
    """
    state = ctx.find_object(CliState)
    url = state.url if state else os.environ.get("STATEKEEL_URL") or statekeel.DEFAULT_URL
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
def console() -> Console:
    """A rich console on the current stdout (so click's test runner captures it)."""
    return Console(soft_wrap=False, highlight=False)


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
    text = value if isinstance(value, str) else json.dumps(value, default=_default, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def fmt_time(when: dt.datetime | None, never: str = "never") -> str:
    """``2026-11-21 22:15:03Z``, or ``never`` for None."""
    return never if when is None else when.strftime("%Y-%m-%d %H:%M:%SZ")


def emit_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], *, footer: str | None = None
) -> None:
    """Print a rich table; ``footer`` goes underneath (e.g. the next-page hint)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in columns:
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
