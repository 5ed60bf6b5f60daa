"""``statekeel verify``: check a tamper-evident store's chains, MACs, heads and anchor."""

from __future__ import annotations

import click
from rich.markup import escape

from statekeel.features.verify import VerifyReport, anchor, verify
from statekeel.store import open_for_maintenance

from ._output import console, emit_json, encryption_from_env, json_option
from .admin import chosen_url

__all__ = ["verify_command"]


@click.command("verify", short_help="Check a tamper-evident store; exit 1 on any failure.")
@click.argument("url", required=False)
@click.option("--anchor", "write_anchor", is_flag=True,
              help="After a clean check, keep the heads in the anchor ($STATEKEEL_ANCHOR: file:/path or a store URL).")
@json_option
@click.pass_context
def verify_command(ctx: click.Context, url: str | None, write_anchor: bool, as_json: bool) -> None:
    """Check every log's hash chain, every record's MAC and version against its partition's head,
    every timestamp, and (with an anchor) that no head is older than the anchor says.

    The MAC key comes from STATEKEEL_MASTER_KEY. Each failure is printed with where it is.

    Example: STATEKEEL_ANCHOR=file:/var/lib/agent/anchor statekeel verify sqlite:///agent.db --anchor
    """
    store = open_for_maintenance(chosen_url(ctx, url), encryption=encryption_from_env())
    with store:
        if store.chain_locked:
            raise click.ClickException(store.chain_locked)
        report = anchor(store) if write_anchor else verify(store)
    if as_json:
        emit_json(_as_dict(report))
    else:
        _render(report)
    if not report.ok:
        ctx.exit(1)


def _as_dict(report: VerifyReport) -> dict[str, object]:
    return {"ok": report.ok, "records": report.records, "entries": report.entries, "logs": report.logs,
            "partitions": report.partitions, "root": report.root, "anchor": report.anchor,
            "failures": report.failures}  # fmt: skip


def _render(report: VerifyReport) -> None:
    out = console()
    out.print(f"{report.records} records, {report.entries} entries in {report.logs} logs, "
              f"{report.partitions} partition heads; root {report.root[:16]}…")  # fmt: skip
    out.print(f"anchor: {escape(report.anchor)}")
    for failure in report.failures:
        out.print(f"  [red]{escape(failure)}[/red]", soft_wrap=True)  # one line each, whatever the width
    out.print("[green]verified[/green]" if report.ok else f"[red]{len(report.failures)} failure(s)[/red]")
