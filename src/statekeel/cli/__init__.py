"""The ``statekeel`` command line: groups named by noun, mirroring the library.

Each group or command lives in its own module and joins ``main`` with one
``main.add_command(...)`` line below. Library errors (:class:`StatekeelError`)
become clean CLI errors here, at the boundary, and nowhere else.
"""

from __future__ import annotations

from typing import Any

import click

import statekeel
from statekeel import DEFAULT_URL, StatekeelError

from . import admin, checkpoints, consumers, decisions, demo, events, gc, keys, notes, runs, sessions, state, ui, verify
from .context import context_command
from .memory import group as memory_group
from ._errors import in_cli_terms
from ._output import CliState, accept_url_everywhere

__all__ = ["main"]


class _MainGroup(click.Group):
    """The root group: turns library errors into ``Error: …`` and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StatekeelError as exc:
            raise click.ClickException(in_cli_terms(str(exc))) from exc


@click.group(cls=_MainGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="STATEKEEL_URL",
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Store to use: sqlite:///file.db, file:///dir, postgresql://…, redis://… (env STATEKEEL_URL).",
)
@click.version_option(package_name="statekeel", prog_name="statekeel")  # read when asked: no metadata at start
@click.pass_context
def main(ctx: click.Context, url: str) -> None:
    """Inspect and manage durable agent state.

    Example: statekeel --url sqlite:///agent.db sessions list --status crashed
    """
    ctx.obj = CliState(url)


main.add_command(sessions.group)
main.add_command(state.group)
main.add_command(admin.migrate)
main.add_command(admin.doctor)
main.add_command(verify.verify_command)
main.add_command(demo.demo)
main.add_command(decisions.group)
main.add_command(runs.group)
main.add_command(keys.group)
main.add_command(keys.erase)
main.add_command(checkpoints.group)
main.add_command(events.group)
main.add_command(consumers.group)
main.add_command(notes.group)
main.add_command(memory_group)
main.add_command(context_command)
main.add_command(gc.gc)
main.add_command(ui.ui)
from .portability import register; register(main)  # noqa: E402,E702 - export, import, copy, backup, restore
accept_url_everywhere(main)  # after every add_command: `statekeel sessions list --url X` works too
