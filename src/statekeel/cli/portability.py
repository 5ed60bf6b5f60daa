"""``statekeel export | import | copy | backup | restore``: moving state between stores."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import click

import statekeel

from ._output import chosen_url, console, emit_json, json_option, missing_sqlite_file

if TYPE_CHECKING:  # loaded by the commands that use them (~50 ms a CLI start otherwise)
    from statekeel import portability as port
    from statekeel.portability.export import OnConflict

__all__ = ["COMMANDS", "register"]


def _report(report: Any, as_json: bool, text: str) -> None:
    if as_json:
        emit_json(dataclasses.asdict(report))
    else:
        console().print(text)


def _source_and_target(ctx: click.Context, first: str | None, second: str | None, name: str) -> tuple[str, str]:
    """``[URL] THING``: with one argument it is THING and the store is ``--url`` / ``$STATEKEEL_URL``."""
    if first is None:
        raise click.UsageError(f"Missing argument '{name}'.", ctx)
    if second is not None:
        return first, second
    url = chosen_url(ctx)
    missing = missing_sqlite_file(url)
    if missing:  # reading it would create an empty store and export/copy nothing
        raise click.ClickException(f"no store at {missing}; give the URL, --url or $STATEKEEL_URL")
    return url, first


@contextmanager
def _progress_bar(label: str, quiet: bool) -> Iterator[port.ProgressFn | None]:
    """A live rich line with the counts so far; nothing at all in ``--json`` mode."""
    if quiet:
        yield None
        return
    from rich.progress import Progress as Bar
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Bar(*columns, console=console(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(p: port.Progress) -> None:
            bar.update(task, description=(
                f"{label}: {p.phase} — {p.records:,} records, {p.logs:,} logs, "
                f"{p.entries:,} entries ({p.written:,} written)"
            ))

        yield update


@click.command("export")
@click.argument("url", metavar="[URL]", required=False)
@click.argument("directory", metavar="DIRECTORY", required=False)
@click.option("--session", "session", metavar="ID", help="Export only this session (history, state, notes, decisions).")
@click.option("--scope", metavar="SCOPE", help="Export only this scope: app, user:<id> or session:<id>.")
@json_option
@click.pass_context
def export_cmd(
    ctx: click.Context, url: str | None, directory: str | None, session: str | None, scope: str | None,
    as_json: bool,
) -> None:
    """Write a store, or one session or scope, to a new folder of readable files.

    The folder is a file:// store plus manifest.json (counts and checksums).
    URL defaults to --url / $STATEKEEL_URL.

    Example: statekeel export sqlite:///agent.db ./support-42 --session support-42
    """
    from statekeel import portability as port  # here: ~35 ms of every other command's start

    url, directory = _source_and_target(ctx, url, directory, "DIRECTORY")
    with _progress_bar("exporting", as_json) as progress:
        r = port.export_store(url, directory, session=session, scope=scope, progress=progress)
    _report(r, as_json, f"exported {r.records} records, {r.logs} logs, {r.entries} entries to {r.path}")


@click.command("import")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("url", required=False)
@click.option(
    "--on-conflict", type=click.Choice(["fail", "skip", "overwrite"]), default="fail", show_default=True,
    help="When the target holds other data under the same keys: stop before writing anything, "
    "keep the target's, or replace it.",
)
@click.option("--no-verify", is_flag=True, help="Import even if the files no longer match the manifest (edited on purpose).")
@json_option
@click.pass_context
def import_cmd(
    ctx: click.Context, directory: str, url: str | None, on_conflict: str, no_verify: bool, as_json: bool
) -> None:
    """Load an export folder into a store; re-running it changes nothing.

    URL defaults to --url / $STATEKEEL_URL.

    Example: statekeel import ./support-42 postgresql://localhost/agents --on-conflict skip
    """
    from statekeel import portability as port

    mode = cast("OnConflict", on_conflict)  # click.Choice has checked it
    with _progress_bar("importing", as_json) as progress:
        r = port.import_store(directory, chosen_url(ctx, url), mode, verify=not no_verify, progress=progress)
    extra = f", {r.skipped} conflicts skipped" if r.skipped else (
        f", {r.overwritten} conflicts overwritten" if r.overwritten else "")
    _report(r, as_json, f"imported {r.records} records, {r.logs} logs, {r.entries} entries "
            f"into {r.target} ({r.written} written{extra}); verified")


@click.command("copy")
@click.argument("src_url", metavar="[SRC_URL]", required=False)
@click.argument("dst_url", metavar="DST_URL", required=False)
@click.option("--no-verify", is_flag=True, help="Skip the final comparison of source and target.")
@json_option
@click.pass_context
def copy_cmd(ctx: click.Context, src_url: str | None, dst_url: str | None, no_verify: bool, as_json: bool) -> None:
    """Copy every record and log from one store to another, with versions,
    timestamps, TTLs and history order unchanged; run it again to resume.
    SRC_URL defaults to --url / $STATEKEEL_URL.

    Example: statekeel copy sqlite:///agent.db postgresql://user@localhost/agents
    """
    from statekeel import portability as port

    src_url, dst_url = _source_and_target(ctx, src_url, dst_url, "DST_URL")
    # STATEKEEL_INTEGRITY=chain: the target is written through its chain, so all it receives is MACed
    target = statekeel.open(dst_url) if os.environ.get("STATEKEEL_INTEGRITY") else None
    try:
        with _progress_bar("copying", as_json) as progress:
            r = port.copy_store(src_url, target or dst_url, progress, verify=not no_verify)
    finally:
        if target is not None:
            target.close()
    checked = "verified" if r.verified else "not verified"
    _report(r, as_json, f"copied {r.records:,} records, {r.logs:,} logs, {r.entries:,} entries "
            f"to {r.target} in {r.seconds:.1f}s ({r.records_per_second:,.0f}/s); {checked}")


@click.command("backup")
@click.argument("url", metavar="[URL]", required=False)
@click.argument("file", metavar="FILE", required=False)
@click.option("--overwrite", is_flag=True, help="Replace FILE if it exists.")
@json_option
@click.pass_context
def backup_cmd(ctx: click.Context, url: str | None, file: str | None, overwrite: bool, as_json: bool) -> None:
    """Write a consistent copy of a SQLite store while agents keep writing to it.

    URL defaults to --url / $STATEKEEL_URL; missing folders of FILE are created.

    Example: statekeel backup sqlite:///agent.db backups/agent-2026-11-21.db
    """
    from statekeel import portability as port

    url, file = _source_and_target(ctx, url, file, "FILE")
    if os.path.isdir(file):
        raise click.BadParameter(f"{file} is a folder; give the backup's file name, e.g. {file}/agent.db",
                                 ctx, param_hint="FILE")
    os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
    r = port.backup_sqlite(url, file, overwrite=overwrite)
    _report(r, as_json, f"backed up {r.records} records and {r.entries} entries to {r.target} ({r.bytes:,} bytes)")


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.argument("url", required=False)
@click.option("--overwrite", is_flag=True, help="Replace a store that already holds data.")
@json_option
@click.pass_context
def restore_cmd(ctx: click.Context, file: str, url: str | None, overwrite: bool, as_json: bool) -> None:
    """Restore a SQLite store from a backup file (URL defaults to --url / $STATEKEEL_URL).

    Example: statekeel restore backups/agent-2026-11-21.db sqlite:///agent.db --overwrite
    """
    from statekeel import portability as port

    r = port.restore_sqlite(file, chosen_url(ctx, url), overwrite=overwrite)
    _report(r, as_json, f"restored {r.records} records and {r.entries} entries into {r.target}")


COMMANDS: list[click.Command] = [export_cmd, import_cmd, copy_cmd, backup_cmd, restore_cmd]


def register(group: click.Group) -> None:
    """Add every command of this module to ``group``."""
    for command in COMMANDS:
        group.add_command(command)
