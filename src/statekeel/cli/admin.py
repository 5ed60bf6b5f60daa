"""``statekeel migrate`` and ``statekeel doctor``: the store's schema and health."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from statekeel import StatekeelError, Store
from statekeel.protocol import MigrationStatus
from statekeel.protocol.capabilities import SupportsRepair
from statekeel.store import open_for_maintenance

from ._output import CliState, console, emit_json, json_option, missing_sqlite_file
from .health import Check, Report, diagnose, examine, quick_diagnose

__all__ = ["Check", "Report", "diagnose", "doctor", "examine", "migrate", "repair_store"]


def chosen_url(ctx: click.Context, url: str | None) -> str:
    return url or ctx.ensure_object(CliState).url


def _status_dict(url: str, status: MigrationStatus, applied: bool) -> dict[str, Any]:
    return {
        "url": url, "current": status.current, "target": status.target,
        "up_to_date": status.up_to_date, "pending": status.pending, "applied": applied,
    }


def _echo_sql(statements: list[str]) -> None:
    for sql in statements:
        click.echo(sql.rstrip(";") + ";")


@click.command("migrate", short_help="Bring the schema up to date, or --check it.")
@click.argument("url", required=False)
@click.option("--check", is_flag=True, help="Only report (writes nothing); exit code 1 if any are pending.")
@click.option("--print-sql", is_flag=True, help="Print the SQL that would run instead of running it.")
@json_option
@click.pass_context
def migrate(ctx: click.Context, url: str | None, check: bool, print_sql: bool, as_json: bool) -> None:
    """Bring the store's schema up to date (URL defaults to --url).

    Example: statekeel migrate sqlite:///agent.db --check
    """
    url = chosen_url(ctx, url)
    missing = missing_sqlite_file(url) if check or print_sql else None
    # A read-only look at a store that does not exist must not create it: the
    # statements are those an empty in-memory database would need.
    store = open_for_maintenance("sqlite:///:memory:" if missing else url)  # needs no encryption key
    ctx.call_on_close(store.close)
    status = store.storage.migrate(check=True)
    if not (check or print_sql or status.up_to_date):
        _run(store, url, status, as_json)
    elif print_sql and not as_json:
        _echo_sql(status.pending)
    else:
        _report(url, status, missing, as_json)
    if check and not status.up_to_date:
        ctx.exit(1)


def _run(store: Store, url: str, status: MigrationStatus, as_json: bool) -> None:
    done = store.storage.migrate()
    if as_json:
        emit_json(_status_dict(url, done, True))
    else:
        click.echo(f"migrated {url} from schema version {status.current} to {done.current}")


def _report(url: str, status: MigrationStatus, missing: str | None, as_json: bool) -> None:
    if as_json:
        emit_json({**_status_dict(url, status, False), "exists": missing is None})
    elif status.up_to_date:
        click.echo(f"{url}: schema version {status.current} is up to date")
    else:
        where = f"no store at {missing} yet" if missing else f"schema version {status.current}"
        click.echo(
            f"{url}: {where}; this statekeel needs version {status.target}. "
            f"`statekeel migrate` would run {len(status.pending)} statements:"
        )
        _echo_sql(status.pending)


# -- doctor -------------------------------------------------------------------

def repair_store(url: str, healthy: bool) -> tuple[bool, str]:
    """Call the backend's ``repair()`` if it has one: (whether it ran, what it said)."""
    try:
        store = open_for_maintenance(url)
    except StatekeelError as exc:
        return False, f"cannot open the store to repair it: {exc}"
    with store:
        if isinstance(store.storage, SupportsRepair):
            return True, store.storage.repair()
        if healthy:
            return False, "nothing to repair"
        return False, (
            f"the {type(store.storage).__name__} cannot repair itself; restore from a backup, "
            "or copy what is readable to a new store"
        )


def render(report: Report, out: Console) -> None:
    out.print(f"[bold]statekeel doctor[/bold] {report.url}")
    for c in report.checks:
        mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]"
        out.print(f" {mark} {c.name:<10} {c.summary}")
        for p in c.problems:
            out.print(f"     [red]{escape(p)}[/red]")
    if report.repair:
        out.print(f"repair: {escape(report.repair)}")
    count = sum(len(c.problems) for c in report.checks)
    out.print("[green]healthy[/green]" if report.ok else f"[red]{count} problem(s) found[/red]")


@click.command("doctor", short_help="Check the store's health; exit 1 on problems.")
@click.argument("url", required=False)
@click.option("--repair", is_flag=True, help="Let the backend repair what it can, then check again.")
@click.option("--quick", is_flag=True,
              help="Only open the store, check the schema and one read (for liveness/readiness probes).")
@json_option
@click.pass_context
def doctor(ctx: click.Context, url: str | None, repair: bool, quick: bool, as_json: bool) -> None:
    """Check the store: schema, backend integrity, and that every record decodes.

    Exit code 1 when any problem is found. URL defaults to --url. --quick reads
    no records: its cost does not grow with the store (Kubernetes probes, docs/deploy.md).

    Example: statekeel doctor sqlite:///agent.db
    """
    url = chosen_url(ctx, url)
    if quick and repair:
        raise click.UsageError("--quick and --repair do not go together: --repair needs the full check")
    report = quick_diagnose(url) if quick else diagnose(url)
    if repair:
        ran, said = repair_store(url, report.ok)
        report = diagnose(url) if ran else report
        report.repair = said
    if as_json:
        emit_json(report.as_dict())
    else:
        render(report, console())
    if not report.ok:
        ctx.exit(1)
