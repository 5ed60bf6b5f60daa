"""``statekeel migrate`` and ``statekeel doctor``: the store's schema and health."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

import statekeel
from statekeel import StatekeelError, Store
from statekeel.core import layout
from statekeel.protocol.capabilities import SupportsIntegrityCheck, SupportsRepair
from statekeel.protocol import LogInfo, MigrationStatus, keys

from ._output import CliState, console, emit_json, encryption_from_env, json_option, missing_sqlite_file


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
    store = statekeel.open("sqlite:///:memory:" if missing else url, migrate=False)
    ctx.call_on_close(store.close)
    status = store.backend.migrate(check=True)
    if not (check or print_sql or status.up_to_date):
        _run(store, url, status, as_json)
    elif print_sql and not as_json:
        _echo_sql(status.pending)
    else:
        _report(url, status, missing, as_json)
    if check and not status.up_to_date:
        ctx.exit(1)


def _run(store: Store, url: str, status: MigrationStatus, as_json: bool) -> None:
    done = store.backend.migrate()
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
MAX_LISTED = 20
"""Problems listed per check; the rest are counted."""


@dataclass
class Check:
    """The outcome of one doctor check."""

    name: str
    summary: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    """Everything ``statekeel doctor`` found."""

    url: str
    checks: list[Check] = field(default_factory=list)
    repair: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "ok": self.ok, "repair": self.repair,
            "checks": [
                {"name": c.name, "ok": c.ok, "summary": c.summary, "problems": c.problems} for c in self.checks
            ],
            "problems": [f"{c.name}: {p}" for c in self.checks for p in c.problems],
        }


class _Problems(list[str]):
    """A problem list that keeps the first MAX_LISTED and counts the rest."""

    extra = 0

    def add(self, text: str) -> None:
        if len(self) < MAX_LISTED:
            self.append(text)
        else:
            self.extra += 1

    def done(self) -> list[str]:
        return [*self, *([f"… and {self.extra} more"] if self.extra else [])]


def _check_schema(store: Store) -> Check:
    status = store.backend.migrate(check=True)
    if status.up_to_date:
        return Check("schema", f"version {status.current}, as this statekeel expects")
    return Check("schema", f"version {status.current}, expected {status.target}", [
        f"{len(status.pending)} migrations are pending; run `statekeel migrate` (see --check / --print-sql)"
    ])


def _check_integrity(store: Store) -> Check:
    if not isinstance(store.backend, SupportsIntegrityCheck):
        return Check("integrity", f"the {type(store.backend).__name__} has no integrity check of its own")
    found = [line.strip() for row in store.backend.integrity_check() for line in str(row).splitlines()]
    problems = [p for p in found if not p.startswith("***")]  # SQLite's "*** in database main ***" header
    return Check("integrity", "the backend's own integrity check", problems)


def _decodes(store: Store, data: bytes, codec: str, context: str, where: str, problems: _Problems) -> None:
    """``context`` is the key the value was encoded under (encryption binds it); ``where`` names it."""
    try:
        store.codec.decode(data, codec, context)
    except Exception as exc:  # any failure to read back is what doctor reports
        problems.add(f"{where}: cannot decode ({type(exc).__name__}: {exc})")


def _check_records(store: Store) -> Check:
    problems, count, after = _Problems(), 0, None
    while page := store.backend.scan("", after=after, limit=500):
        for rec in page:
            _decodes(store, rec.data, rec.codec, rec.key, rec.key, problems)
        count, after = count + len(page), page[-1].key
    return Check("records", f"{count} records read and decoded", problems.done())


def _check_log(store: Store, info: LogInfo, problems: _Problems) -> int:
    seq, count = info.first_seq, 0
    while entries := store.backend.read(info.log, start=seq, limit=500):
        for entry in entries:
            if entry.seq != seq:
                problems.add(f"{info.log}: entry {seq} is missing (next found: {entry.seq})")
            _decodes(store, entry.data, entry.codec, info.log, f"{info.log}#{entry.seq}", problems)
            seq = entry.seq + 1
        count += len(entries)
    if seq <= info.last_seq:
        problems.add(f"{info.log}: entries {seq}..{info.last_seq} are missing")
    return count


def _check_logs(store: Store) -> Check:
    problems, logs, entries, after = _Problems(), 0, 0, None
    while page := store.backend.scan_logs("", after=after, limit=100):
        for info in page:
            entries += _check_log(store, info, problems)
        logs, after = logs + len(page), page[-1].log
    return Check("logs", f"{logs} logs, {entries} entries read and decoded", problems.done())


def _check_sessions(store: Store) -> Check:
    problems, count, after = _Problems(), 0, None
    while page := store.backend.scan(layout.SESSION_INDEX_PREFIX, after=after, limit=500):
        ids = [keys.split(r.key)[-1] for r in page]
        for sid, meta in zip(ids, store.backend.get_many([layout.session_meta_key(i) for i in ids])):
            if meta is None:
                problems.add(f"session {sid!r} is listed but its metadata record is missing")
        count, after = count + len(page), page[-1].key
    return Check("sessions", f"{count} sessions listed, each with its metadata", problems.done())


def examine(store: Store) -> Report:
    """Run every check on an open store; data checks need a current schema."""
    report = Report(store.url, [Check("open", f"opened with the {type(store.backend).__name__}")])
    for check in (_check_schema, _check_integrity, _check_records, _check_logs, _check_sessions):
        name = check.__name__.removeprefix("_check_")
        try:
            report.checks.append(check(store))
        except StatekeelError as exc:
            report.checks.append(Check(name, "could not run", [str(exc)]))
        if name == "schema" and not report.ok:
            break  # without the current schema, reading data only repeats the error
    return report


def diagnose(url: str) -> Report:
    missing = missing_sqlite_file(url)
    if missing:
        return Report(url, [Check("open", "no store", [
            f"no store at {missing}; check the URL, or create it with `statekeel migrate`"
        ])])
    try:
        store = statekeel.open(url, migrate=False, encryption=encryption_from_env())
    except StatekeelError as exc:
        return Report(url, [Check("open", "could not open the store", [str(exc)])])
    with store:
        return examine(store)


def repair_store(url: str, healthy: bool) -> tuple[bool, str]:
    """Call the backend's ``repair()`` if it has one: (whether it ran, what it said)."""
    try:
        store = statekeel.open(url, migrate=False)
    except StatekeelError as exc:
        return False, f"cannot open the store to repair it: {exc}"
    with store:
        if isinstance(store.backend, SupportsRepair):
            return True, store.backend.repair()
        if healthy:
            return False, "nothing to repair"
        return False, (
            f"the {type(store.backend).__name__} cannot repair itself; restore from a backup, "
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
@json_option
@click.pass_context
def doctor(ctx: click.Context, url: str | None, repair: bool, as_json: bool) -> None:
    """Check the store: schema, backend integrity, and that every record decodes.

    Exit code 1 when any problem is found. URL defaults to --url.

    Example: statekeel doctor sqlite:///agent.db
    """
    url = chosen_url(ctx, url)
    report = diagnose(url)
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
