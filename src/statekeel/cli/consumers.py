"""``statekeel consumers …``: the named readers of an event stream, their positions and lag.

``seek`` moves a consumer's acknowledged position (backwards to replay events,
forwards to skip them), as ``stream.consumer(name).seek(seq)`` does.
"""

from __future__ import annotations

from typing import Any

import click

from statekeel import Consumer, InvalidInputError, Store
from statekeel.core import layout
from statekeel.protocol import keys

from ._output import emit_json, emit_table, json_option, store_from

__all__ = ["consumer_dict", "consumer_names", "group"]


def consumer_dict(c: Consumer, last_seq: int) -> dict[str, Any]:
    position = c.position
    return {"stream": c.stream.name, "name": c.name, "position": position, "lag": max(0, last_seq - position)}


def consumer_names(store: Store, stream: str) -> list[str]:
    """Every consumer that has stored a position in ``stream``, in name order."""
    prefix = layout.consumers_prefix(stream)
    names: list[str] = []
    while recs := store.backend.scan(prefix, after=prefix + keys.escape(names[-1]) if names else None, limit=500):
        names += [keys.unescape(r.key[len(prefix):]) for r in recs]
    return names


@click.group("consumers")
def group() -> None:
    """Consumers of an event stream: their positions, lag, and seek.

    Example: statekeel consumers list orders
    """


@group.command("list")
@click.argument("stream")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, stream: str, as_json: bool) -> None:
    """List a stream's consumers with their acknowledged position and lag.

    Example: statekeel consumers list orders --json
    """
    store = store_from(ctx, must_exist=True)
    events = store.events(stream)
    last = events.last_seq
    found = [consumer_dict(events.consumer(n), last) for n in consumer_names(store, stream)]
    if as_json:
        emit_json({"items": found, "next": None})
        return
    rows = ([c["name"], str(c["position"]), str(c["lag"])] for c in found)
    emit_table(f"consumers of {stream} (last seq {last})", ["consumer", "position", "lag"], rows,
               whole=("consumer",))


@group.command("lag")
@click.argument("stream")
@click.argument("name")
@json_option
@click.pass_context
def lag(ctx: click.Context, stream: str, name: str, as_json: bool) -> None:
    """Print how many events a consumer has not acknowledged yet.

    Example: statekeel consumers lag orders billing
    """
    events = store_from(ctx, must_exist=True).events(stream)
    found = consumer_dict(events.consumer(name), events.last_seq)
    if as_json:
        emit_json(found)
        return
    click.echo(str(found["lag"]))
    click.echo(f"position {found['position']} of {events.last_seq}", err=True)


@group.command("seek")
@click.argument("stream")
@click.argument("name")
@click.argument("seq", type=click.IntRange(0))
@json_option
@click.pass_context
def seek(ctx: click.Context, stream: str, name: str, seq: int, as_json: bool) -> None:
    """Set a consumer's acknowledged position to SEQ (0: replay everything).

    Example: statekeel consumers seek orders billing 1200
    """
    events = store_from(ctx, must_exist=True).events(stream)
    if seq > events.last_seq:
        raise InvalidInputError(f"{stream} ends at seq {events.last_seq}; seek to at most that "
                                f"(0 replays everything)")
    consumer = events.consumer(name)
    consumer.seek(seq)
    found = consumer_dict(consumer, events.last_seq)
    if as_json:
        emit_json(found)
        return
    click.echo(f"{name} of {stream} is at {seq}; {found['lag']} events to read")
