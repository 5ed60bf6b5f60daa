"""``statekeel state …``: read and write versioned state in a scope.

SCOPE is ``app``, ``user:<id>`` or ``session:<id>``. Reads use a plain view of
the scope (reading never opens, creates or re-activates a session); writes go
through ``store.scope()`` so a session's TTL and heartbeat are kept as the
library keeps them.
"""

from __future__ import annotations

import json
from typing import Any

import click

from statekeel import ANY, ConflictError, Item, StateView, Store
from statekeel.features.state import parse_scope

from ._output import duration_option, emit_json, emit_table, fmt_time, json_option, short_json, store_from
from ._values import lenient_item, lenient_items


def item_dict(scope: str, item: Item) -> dict[str, Any]:
    return {
        "scope": scope, "key": item.key, "value": item.value, "version": item.version,
        "created_at": item.created_at, "updated_at": item.updated_at, "expires_at": item.expires_at,
    }


def _checked_scope(scope: str) -> str:
    if parse_scope(scope).kind == "temp":
        raise click.BadParameter(
            "temp state lives inside one process and is never stored; use app, user:<id> or session:<id>",
            param_hint="SCOPE",
        )
    return scope


def read_view(ctx: click.Context, scope: str) -> tuple[Store, StateView]:
    """A read-only view of ``scope`` that never touches the session it may belong to."""
    parsed = parse_scope(_checked_scope(scope))
    store = store_from(ctx, must_exist=True)
    return store, StateView(store, parsed)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{text!r} is not JSON ({exc.msg}); quote text like '\"open\"' "
            "and write objects like '{\"id\": 7}'",
            param_hint="JSON_VALUE",
        ) from None


def _conflict_message(scope: str, key: str, exc: ConflictError) -> str:
    """The library names the backend key; here the user wants the scope, key and next step."""
    if exc.actual is None:
        return f"conflict: {scope} has no {key!r} (expected version {exc.expected}); create it with --create"
    if exc.expected is None:
        return (
            f"conflict: {scope} {key!r} already exists (version {exc.actual}) and --create only writes "
            f"new keys; overwrite it with --expect {exc.actual}"
        )
    return (
        f"conflict: {scope} {key!r} is at version {exc.actual}, not {exc.expected}; re-read it "
        f"(statekeel state get {scope} {key} --json) and retry with --expect {exc.actual}"
    )


@click.group("state")
def group() -> None:
    """Read and write versioned state: app, user:<id> or session:<id>.

    Example: statekeel state set user:u-7 language '"fr"'
    """


@group.command("get", short_help="Print the value at KEY.")
@click.argument("scope")
@click.argument("key")
@json_option
@click.pass_context
def get(ctx: click.Context, scope: str, key: str, as_json: bool) -> None:
    """Print the value at KEY as JSON (with --json: also its version and times).

    Example: statekeel state get session:support-42 ticket
    """
    item = lenient_item(*read_view(ctx, scope), key)
    if as_json:
        emit_json(item_dict(scope, item))
        return
    emit_json(item.value)
    click.echo(
        f"version {item.version}, updated {fmt_time(item.updated_at)}, expires {fmt_time(item.expires_at)}",
        err=True,
    )


@group.command("set", short_help="Store a JSON value at KEY (optionally CAS).")
@click.argument("scope")
@click.argument("key")
@click.argument("json_value", metavar="JSON_VALUE")
@click.option("--expect", type=click.IntRange(1), metavar="VERSION", help="Write only if KEY is at VERSION.")
@click.option("--create", is_flag=True, help="Write only if KEY does not exist yet.")
@duration_option("--ttl", help="Expire the value after this long (e.g. 2h).")
@json_option
@click.pass_context
def set_cmd(
    ctx: click.Context, scope: str, key: str, json_value: str, expect: int | None,
    create: bool, ttl: float | None, as_json: bool,
) -> None:
    """Store JSON_VALUE at KEY; --expect / --create make it a compare-and-set.

    Example: statekeel state set app plan '{"step": 2}' --expect 1
    """
    if expect is not None and create:
        raise click.UsageError("use either --expect VERSION or --create, not both")
    value = parse_value(json_value)
    view = store_from(ctx).scope(_checked_scope(scope))
    try:
        item = view.put(key, value, expect=None if create else ANY if expect is None else expect, ttl=ttl)
    except ConflictError as exc:
        raise click.ClickException(_conflict_message(scope, key, exc)) from exc
    if as_json:
        emit_json(item_dict(scope, item))
    else:
        click.echo(f"{scope} {key} = {short_json(value)} (version {item.version})")


@group.command("delete")
@click.argument("scope")
@click.argument("key")
@click.option("--expect", type=click.IntRange(1), metavar="VERSION", help="Delete only if KEY is at VERSION.")
@click.pass_context
def delete(ctx: click.Context, scope: str, key: str, expect: int | None) -> None:
    """Delete KEY from SCOPE (exit code 1 if it did not exist).

    Example: statekeel state delete user:u-7 draft --expect 3
    """
    view = store_from(ctx).scope(_checked_scope(scope))
    if not view.delete(key, expect=ANY if expect is None else expect):
        raise click.ClickException(f"no {key!r} in {scope}; nothing deleted")
    click.echo(f"deleted {scope} {key}")


@group.command("list")
@click.argument("scope")
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True, help="Page size.")
@click.option("--after", metavar="CURSOR", help="Cursor printed by the previous page.")
@json_option
@click.pass_context
def list_cmd(
    ctx: click.Context, scope: str, prefix: str, limit: int, after: str | None, as_json: bool
) -> None:
    """List the keys of SCOPE with their versions and values.

    Example: statekeel state list user:u-7 --prefix draft- --json
    """
    page = lenient_items(*read_view(ctx, scope), prefix, after, limit)
    if as_json:
        emit_json({"items": [item_dict(scope, i) for i in page], "next": page.next})
        return
    rows = (
        [i.key, str(i.version), fmt_time(i.updated_at), fmt_time(i.expires_at), short_json(i.value)] for i in page
    )
    footer = f"next page: --after {page.next}" if page.next else None
    emit_table(f"state of {scope}", ["key", "version", "updated", "expires", "value"], rows, footer=footer)
