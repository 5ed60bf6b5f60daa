"""``statekeel runs …``: list runs, show their steps, cancel them, resume waiting ones.

``resume`` supplies the input a ``run.wait_for(...)`` is waiting for; the run
continues the next time its script is started (from any machine).
"""

from __future__ import annotations

import json
from typing import Any

import click

from statekeel import Page, RunInfo, StepInfo, Store
from statekeel.core import layout
from statekeel.features.run_records import RUN_STATUSES, run_info
from statekeel.protocol import keys

from ._output import duration_option, emit_json, emit_table, fmt_time, json_option, short_json, store_from
from ._values import decode_lenient


def step_dict(s: StepInfo) -> dict[str, Any]:
    return {
        "name": s.name, "kind": s.kind, "status": s.status, "attempts": s.attempts,
        "started_at": s.started_at, "finished_at": s.finished_at, "duration": s.duration, "error": s.error,
    }


def run_dict(r: RunInfo, *, steps: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id, "status": r.status, "created_at": r.created_at, "updated_at": r.updated_at,
        "waiting_for": r.waiting_for, "prompt": r.prompt, "error": r.error,
        "steps_completed": r.steps_completed, "last_step": r.last_step,
    }
    if steps:
        out["steps"] = [step_dict(s) for s in r.steps]
    return out


def step_values(store: Store, run_id: str, step: StepInfo) -> dict[str, Any]:
    """A step's stored ``result`` and, for a ``wait_for`` step, the ``input`` a person supplied
    (also while the run has not picked it up yet). Read from the run's records; writes nothing."""
    out: dict[str, Any] = {"result": None}
    rec = store.backend.get(layout.run_steps_prefix(run_id) + keys.escape(step.name))
    if rec is not None:
        out["result"] = decode_lenient(store, rec.data, rec.codec, rec.key).get("result")
    if step.kind == "wait":
        supplied = store.backend.get(layout.run_input_key(run_id, step.name))
        out["input"] = (decode_lenient(store, supplied.data, supplied.codec, supplied.key)
                        if supplied is not None else out["result"])
    return out


def _json_input(ctx: click.Context, param: click.Parameter, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{text!r} is not JSON ({exc.msg}); quote text like '\"yes\"' and write objects like '{{\"ok\": true}}'",
            ctx, param,
        ) from None


def _secs(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.2f}ms" if value < 1 else f"{value:.2f}s"


@click.group("runs")
def group() -> None:
    """Resumable runs: their steps, attempts and timings; resume or cancel them.

    Example: statekeel runs list --status waiting
    """


@group.command("list")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs with this status.")
@duration_option("--stale-after", help="Only running runs silent this long whose process died (e.g. 5m).")
@click.option("--mark-crashed", is_flag=True, help="With --stale-after: mark the stale runs crashed.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Page size.")
@click.option("--after", metavar="CURSOR", help="Cursor printed by the previous page.")
@json_option
@click.pass_context
def list_cmd(
    ctx: click.Context, status: Any, stale_after: float | None, mark_crashed: bool, limit: int,
    after: str | None, as_json: bool,
) -> None:
    """List runs in id order, a page at a time.

    Example: statekeel runs list --stale-after 10m --mark-crashed
    """
    if mark_crashed and stale_after is None:
        raise click.UsageError("--mark-crashed needs --stale-after (how long a dead run has been silent)")
    if mark_crashed:
        assert stale_after is not None
        marked = store_from(ctx).mark_stale_runs_crashed(stale_after)
        _emit_page(Page(marked, None), as_json)
        return
    _emit_page(store_from(ctx).runs(status=status, stale_after=stale_after, after=after, limit=limit), as_json)


def _emit_page(page: Page[RunInfo], as_json: bool) -> None:
    if as_json:
        emit_json({"items": [run_dict(r, steps=False) for r in page], "next": page.next})
        return
    rows = (
        [r.id, r.status, str(r.steps_completed), r.last_step or "", fmt_time(r.updated_at),
         r.waiting_for or short_json(r.error or "", 40)]
        for r in page
    )
    footer = f"next page: --after {page.next}" if page.next else None
    emit_table("runs", ["id", "status", "steps done", "last step", "updated", "waiting for / error"], rows, footer=footer)


@group.command("show")
@click.argument("run_id", metavar="RUN")
@json_option
@click.pass_context
def show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run's status and every step with its attempts, timings, result and input.

    Example: statekeel runs show report-2026-11-21
    """
    store = store_from(ctx)
    info = run_info(store, run_id)  # reads only
    values = {s.name: step_values(store, run_id, s) for s in info.steps}
    if as_json:
        emit_json({**run_dict(info, steps=False), "steps": [{**step_dict(s), **values[s.name]} for s in info.steps]})
        return
    waiting = f" — waiting for {info.waiting_for!r}: {info.prompt or ''}" if info.waiting_for else ""
    click.echo(f"run {info.id}: {info.status}{waiting}" + (f" ({info.error})" if info.error else ""))
    rows = (
        [s.name, s.kind, s.status, str(s.attempts), fmt_time(s.started_at, ""), _secs(s.duration),
         short_json(s.error or "", 50), _shown_value(s, values[s.name])]
        for s in info.steps
    )
    emit_table("steps", ["step", "kind", "status", "attempts", "started", "took", "last error", "result / input"],
               rows, whole=("step",))


def _shown_value(step: StepInfo, values: dict[str, Any]) -> str:
    if step.kind == "wait":
        return "" if values["input"] is None else f"input: {short_json(values['input'], 80)}"
    return "" if step.status != "completed" else short_json(values["result"], 80)


@group.command("cancel")
@click.argument("run_id", metavar="RUN")
@click.option("--reason", help="Why (shown by `runs show`).")
@json_option
@click.pass_context
def cancel(ctx: click.Context, run_id: str, reason: str | None, as_json: bool) -> None:
    """Cancel a run: no process runs another step of it.

    Example: statekeel runs cancel report-2026-11-21 --reason "superseded"
    """
    info = store_from(ctx).cancel_run(run_id, reason=reason)
    if as_json:
        emit_json(run_dict(info, steps=False))
        return
    click.echo(f"cancelled run {info.id} ({info.steps_completed} steps had finished)")


@group.command("resume")
@click.argument("run_id", metavar="RUN")
@click.option("--step", "step_name", metavar="NAME", help="The wait_for step to answer (default: the one it waits at).")
@click.option("--input", "value", metavar="JSON", required=True, callback=_json_input, help="The value, as JSON.")
@json_option
@click.pass_context
def resume(ctx: click.Context, run_id: str, step_name: str | None, value: Any, as_json: bool) -> None:
    """Supply the input a waiting run asked for; start its script again to continue.

    Example: statekeel runs resume essay --step answers --input '{"audience": "new engineers"}'
    """
    info = store_from(ctx).resume_run(run_id, step_name, value)
    if as_json:
        emit_json(run_dict(info, steps=False))
        return
    click.echo(f"run {info.id} has its input ({short_json(value)}); start its script again to continue")
