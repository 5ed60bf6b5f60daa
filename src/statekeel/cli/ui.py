"""``statekeel ui``: serve the web inspector (:mod:`statekeel.ui`) for one store."""

from __future__ import annotations

import click

from ._output import CliState, encryption_from_env, missing_sqlite_file

__all__ = ["ui"]


@click.command("ui", short_help="Browse the store in a local web inspector.")
@click.argument("url", required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback requires the printed token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one).")
@click.option("--allow-writes", is_flag=True,
              help="Enable restore, fork, resolve, resume and delete (each asks for confirmation).")
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
@click.pass_context
def ui(ctx: click.Context, url: str | None, host: str, port: int, allow_writes: bool, verbose: bool) -> None:
    """Serve a local web inspector for the store (URL defaults to --url): sessions and their
    timelines, decisions, checkpoints with diffs, runs, event streams and the erasure log.

    Read-only unless --allow-writes. Encrypted stores need STATEKEEL_MASTER_KEY, as every command;
    without it the inspector opens locked and shows counts only. Ctrl-C stops it.

    Example: statekeel ui sqlite:///agent.db --port 8765
    """
    url = url or ctx.ensure_object(CliState).url
    missing = missing_sqlite_file(url)
    if missing:
        raise click.ClickException(f"no store at {missing}; check the URL (or --url / $STATEKEEL_URL)")
    # loaded here, not at the CLI's start: http.server and ssl are ~60 ms of every other command's
    from statekeel.ui import Inspector, is_loopback, make_server, new_token, open_inspector

    store, locked = open_inspector(url, encryption_from_env())
    ctx.call_on_close(store.close)
    token = None if is_loopback(host) else new_token()
    server = make_server(Inspector(store, locked, allow_writes, token), host, port, verbose=verbose)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{server.server_address[1]}/" + (f"?token={token}" if token else "")
    click.echo(f"statekeel inspector for {store.url} at {address}")
    click.echo("writes enabled (restore, fork, resolve, resume, delete)" if allow_writes else "read-only")
    if locked:
        click.echo(f"locked: {locked}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
