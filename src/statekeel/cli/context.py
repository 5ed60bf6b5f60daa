"""``statekeel context SESSION``: the session's boot document, regenerated from state.

The durable equivalent of a hand-kept boot file: standing orders, the user's profile, open
decisions, waiting runs, relevant memories, summaries and recent messages within a token
budget (``s.context()``, docs/working-set.md). Reading it never opens, re-activates or
writes the session.
"""

from __future__ import annotations

import click

from ._output import CliState, emit_json, json_option, read_session, store_from

__all__ = ["context_command"]


@click.command("context", short_help="Print a session's working set (boot document) as Markdown.")
@click.argument("session_id")
@click.argument("url", required=False)
@click.option("--budget", type=int, default=4000, show_default=True, help="Token budget of the document.")
@click.option("--recent", type=int, default=None, help="Show at most this many recent messages.")
@json_option
@click.pass_context
def context_command(
    ctx: click.Context, session_id: str, url: str | None, budget: int, recent: int | None, as_json: bool
) -> None:
    """Print what a new context window needs for SESSION, within --budget tokens.

    The Markdown goes to stdout; the tokens used and what was dropped for the budget go
    to stderr (--json prints everything as one document). URL defaults to --url.

    Example: statekeel context support-42 sqlite:///agent.db --budget 4000
    """
    if url:  # the positional URL wins over --url, as for `statekeel doctor URL`
        ctx.ensure_object(CliState).url = url
    session = read_session(store_from(ctx, must_exist=True), session_id)
    ws = session.context(budget, recent=recent)
    if as_json:
        emit_json(ws.to_dict())
        return
    click.echo(ws.render(), nl=False)
    click.echo(f"{ws.tokens} of {ws.budget} tokens ({ws.tokenizer}); {len(ws.dropped)} dropped", err=True)
    for d in ws.dropped:
        cost = "" if d.tokens is None else f", {d.tokens} tokens"
        click.echo(f"  dropped {d.section} {d.item}{cost}: {d.reason}", err=True)
