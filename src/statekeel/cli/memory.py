"""``statekeel memory …``: inspect and maintain long-term memory (``store.memory(namespace)``).

A NAMESPACE is written with ``/`` between its labels (``user/u-7/facts``) or as a JSON
array (``'["user", "a/b"]'``) when a label holds a ``/``. ``reindex`` re-embeds what
another embedder made and rebuilds the native index (SQLite FTS5, PostgreSQL).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import click

import statekeel
from statekeel import NotFoundError
from statekeel.features.memory import Embedder, MemoryHit, MemoryItem

from ._output import chosen_url, duration_option, emit_json, emit_table, encryption_from_env, fmt_time, json_option
from ._output import short_json, store_from
from .state import parse_value

__all__ = ["group"]

_EMBEDDER_HELP = "'default' (WordLlama, statekeel[memory]), 'none' (text only) or module:attribute of your own."


def parse_namespace(text: str) -> tuple[str, ...]:
    """``user/u-7`` or ``["user", "u-7"]`` as a tuple (checked by the library)."""
    if text.startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{text!r} is not a JSON array ({exc.msg})", param_hint="NAMESPACE") from None
        return tuple(labels) if isinstance(labels, list) else (text,)
    return tuple(text.split("/"))


def load_embedder(spec: str) -> Embedder | None:
    """``default``, ``none`` or ``module:attribute`` (a callable or an object with ``embed``)."""
    if spec in ("default", "none"):
        return None if spec == "none" else "default"
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise click.BadParameter(f"{spec!r}: use {_EMBEDDER_HELP}", param_hint="--embedder")
    try:
        found: Any = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {spec!r}: {exc}", param_hint="--embedder") from None
    return found


embedder_option = click.option("--embedder", "embedder_spec", default="default", show_default=True,
                               metavar="SPEC", help=f"Embedder: {_EMBEDDER_HELP}")


def _memory(ctx: click.Context, namespace: str, embedder_spec: str, *, must_exist: bool = True) -> statekeel.Memory:
    store = store_from(ctx, must_exist=must_exist)
    return store.memory(parse_namespace(namespace), embedder=load_embedder(embedder_spec))


def item_dict(item: MemoryItem) -> dict[str, Any]:
    return {"namespace": list(item.namespace), "key": item.key, "value": item.value, "text": item.text,
            "metadata": item.metadata, "created_at": item.created_at, "updated_at": item.updated_at,
            "expires_at": item.expires_at, "embedder": item.embedder}


def hit_dict(hit: MemoryHit) -> dict[str, Any]:
    return {"namespace": list(hit.namespace), "key": hit.key, "score": hit.score, "matched": list(hit.matched),
            "text": hit.text, "value": hit.value, "metadata": hit.metadata, "updated_at": hit.updated_at}


@click.group("memory")
def group() -> None:
    """Long-term memory: list, search, put, get, delete, forget, reindex.

    Example: statekeel memory search user/u-7 "where does the user live"
    """


@group.command("namespaces")
@click.argument("prefix", required=False)
@json_option
@click.pass_context
def namespaces(ctx: click.Context, prefix: str | None, as_json: bool) -> None:
    """List the namespaces holding memories (under PREFIX).

    Example: statekeel memory namespaces user
    """
    found = store_from(ctx, must_exist=True).memory_namespaces(parse_namespace(prefix) if prefix else (), limit=10_000)
    if as_json:
        emit_json([list(ns) for ns in found])
        return
    for ns in found:
        click.echo("/".join(ns))


@group.command("list")
@click.argument("namespace")
@click.option("--limit", default=100, show_default=True, help="At most this many items.")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, namespace: str, limit: int, as_json: bool) -> None:
    """List the items of NAMESPACE and the namespaces below it, in key order.

    Example: statekeel memory list user/u-7 --json
    """
    items = _memory(ctx, namespace, "none").items(limit=limit)
    if as_json:
        emit_json([item_dict(i) for i in items])
        return
    rows = (["/".join(i.namespace), i.key, fmt_time(i.updated_at), short_json(i.text, 80)] for i in items)
    emit_table(f"memories under {namespace}", ["namespace", "key", "updated", "text"], rows, whole=("key",))


@group.command("search")
@click.argument("namespace")
@click.argument("query")
@click.option("--limit", default=10, show_default=True)
@click.option("--offset", default=0, show_default=True)
@click.option("--filter", "filter_json", default=None, metavar="JSON", help='Exact metadata values: \'{"kind": "fact"}\'.')
@click.option("--mode", type=click.Choice(["hybrid", "text", "vector"]), default=None,
              help="Default: hybrid with an embedder, text without.")
@embedder_option
@json_option
@click.pass_context
def search(ctx: click.Context, namespace: str, query: str, limit: int, offset: int, filter_json: str | None,
           mode: Any, embedder_spec: str, as_json: bool) -> None:
    """Search NAMESPACE (and below) for QUERY, best first, saying why each matched.

    Example: statekeel memory search user/u-7 "vegetarian?" --filter '{"kind": "pref"}'
    """
    flt = parse_value(filter_json) if filter_json else None
    hits = _memory(ctx, namespace, embedder_spec).search(query, filter=flt, limit=limit, offset=offset, mode=mode)
    if as_json:
        emit_json([hit_dict(h) for h in hits])
        return
    rows = ([f"{h.score:.4f}", "/".join(h.namespace), h.key, ",".join(h.matched), short_json(h.text, 70)]
            for h in hits)
    emit_table(f"{query!r} in {namespace}", ["score", "namespace", "key", "matched", "text"], rows, whole=("key",))


@group.command("get")
@click.argument("namespace")
@click.argument("key")
@click.pass_context
def get(ctx: click.Context, namespace: str, key: str) -> None:
    """Print one item as JSON (exit code 1 if there is none).

    Example: statekeel memory get user/u-7 home
    """
    item = _memory(ctx, namespace, "none").get(key)
    if item is None:
        raise NotFoundError(f"no memory {key!r} in {namespace}; see `statekeel memory list {namespace}`")
    emit_json(item_dict(item))


@group.command("put")
@click.argument("namespace")
@click.argument("key")
@click.argument("json_value")
@click.option("--text", default=None, help="What search matches (default: the value as text).")
@click.option("--metadata", "metadata_json", default=None, metavar="JSON", help="A JSON object.")
@duration_option("--ttl", help="Expire after this long (e.g. 30d).")
@embedder_option
@click.pass_context
def put(ctx: click.Context, namespace: str, key: str, json_value: str, text: str | None, metadata_json: str | None,
        ttl: float | None, embedder_spec: str) -> None:
    """Store JSON_VALUE at KEY; prints the stored item (an existing one if it was a duplicate).

    Example: statekeel memory put user/u-7 home '"Lives in Lyon"' --metadata '{"kind": "fact"}'
    """
    meta = parse_value(metadata_json) if metadata_json else None
    item = _memory(ctx, namespace, embedder_spec, must_exist=False).put(
        key, parse_value(json_value), text=text, metadata=meta, ttl=ttl)
    emit_json(item_dict(item))


@group.command("delete")
@click.argument("namespace")
@click.argument("key")
@click.pass_context
def delete(ctx: click.Context, namespace: str, key: str) -> None:
    """Delete one item (exit code 1 if there was none).

    Example: statekeel memory delete user/u-7 home
    """
    if not _memory(ctx, namespace, "none").delete(key):
        raise NotFoundError(f"no memory {key!r} in {namespace}")
    click.echo(f"deleted {key} from {namespace}")


@group.command("forget")
@click.argument("namespace")
@duration_option("--max-age", help="Delete items created longer ago than this (e.g. 90d).")
@duration_option("--inactive", help="Delete items not written for this long (e.g. 30d).")
@click.option("--keep", type=int, default=None, help="Keep only the N most recently written per namespace.")
@click.pass_context
def forget(ctx: click.Context, namespace: str, max_age: float | None, inactive: float | None,
           keep: int | None) -> None:
    """Apply forgetting policies to NAMESPACE and below; prints how many items went.

    Example: statekeel memory forget user --inactive 90d --keep 1000
    """
    gone = _memory(ctx, namespace, "none").forget(max_age=max_age, inactive=inactive, keep=keep)
    click.echo(f"forgot {gone} memories under {namespace}")


@group.command("policy")
@click.argument("namespace")
@duration_option("--max-age", help="gc deletes items created longer ago than this (e.g. 90d).")
@duration_option("--inactive", help="gc deletes items not written for this long (e.g. 30d).")
@click.option("--keep", type=int, default=None, help="gc keeps only the N most recently written per namespace.")
@click.option("--clear", is_flag=True, help="Remove the policy of NAMESPACE.")
@json_option
@click.pass_context
def policy(ctx: click.Context, namespace: str, max_age: float | None, inactive: float | None, keep: int | None,
           clear: bool, as_json: bool) -> None:
    """Show, set or clear the forgetting policy `statekeel gc` applies to NAMESPACE and below.

    Example: statekeel memory policy user --inactive 90d --keep 1000
    """
    changing = clear or any(v is not None for v in (max_age, inactive, keep))
    mem = _memory(ctx, namespace, "none", must_exist=not changing)
    if clear and any(v is not None for v in (max_age, inactive, keep)):
        raise click.UsageError("--clear removes the policy; give it alone")
    if changing:
        mem.set_policy(max_age=max_age, inactive=inactive, keep=keep)
    found = mem.policy()
    if as_json:
        emit_json({"namespace": list(mem.namespace), "policy": None if found is None else found.as_dict()})
    elif found is None:
        click.echo(f"{namespace}: no forgetting policy")
    else:
        rules = ", ".join(f"{k}={v}" for k, v in found.as_dict().items() if v is not None)
        click.echo(f"{namespace}: {rules} (applied by statekeel gc)")


@group.command("reindex")
@click.argument("url", required=False)
@click.option("--namespace", default=None, help="Only this namespace (and below); default: every one.")
@click.option("--force", is_flag=True, help="Re-embed every item, not only those another embedder made.")
@embedder_option
@json_option
@click.pass_context
def reindex(ctx: click.Context, url: str | None, namespace: str | None, force: bool, embedder_spec: str,
            as_json: bool) -> None:
    """Re-embed memories made by another embedder and rebuild the native search index.

    Example: statekeel memory reindex sqlite:///agent.db --namespace user/u-7
    """
    store = statekeel.open(chosen_url(ctx, url), encryption=encryption_from_env())
    ctx.call_on_close(store.close)
    embedder = load_embedder(embedder_spec)
    if namespace:
        roots = [parse_namespace(namespace)]
    else:
        roots = sorted({ns[:1] for ns in store.memory_namespaces(limit=1_000_000)})
    done = {"/".join(ns): store.memory(ns, embedder=embedder).reindex(force=force) for ns in roots}
    if as_json:
        emit_json({"reembedded": done})
        return
    for ns, n in done.items():
        click.echo(f"{ns}: {n} re-embedded, index rebuilt")
    if not done:
        click.echo("no memories in this store")
