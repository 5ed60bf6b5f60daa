"""statekeel's public conformance suite and test helpers.

* :mod:`statekeel.testing.plugin` — the pytest plugin (fixtures ``store``,
  ``store_url``, ``open_store``, ``backend_name``) that runs each conformance
  test once per backend;
* :mod:`statekeel.testing.conformance` — the tests every backend must pass;
* :mod:`statekeel.testing.servers` — real throwaway PostgreSQL and Redis servers.

``BACKENDS`` maps a backend name to a factory that returns the URL of a fresh,
empty store; :func:`register_backend` adds a third-party one (see
docs/writing-a-backend.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .servers.pool import ServerPool

__all__ = ["BACKENDS", "PROCESS_LOCAL", "BackendContext", "ServerPool", "register_backend"]


@dataclass
class BackendContext:
    """What a backend factory gets: a private temp dir, the servers, a counter."""

    tmp_path: Path
    servers: ServerPool
    n: int


def _postgres(ctx: BackendContext) -> str:
    return f"{ctx.servers.postgres().url}?schema=sk_test_{ctx.n}"


def _redis(ctx: BackendContext) -> str:
    ctx.servers.flush_redis()
    return ctx.servers.redis().url


def _dynamodb(ctx: BackendContext) -> str:
    return ctx.servers.dynamodb().url(f"sk_test_{os.getpid()}_{ctx.n}")


def _tiered(mode: str, **options: object) -> Callable[[BackendContext], str]:
    """A tiered store over a flushed Redis and a fresh PostgreSQL schema (docs/tiered.md)."""

    def factory(ctx: BackendContext) -> str:
        from ..backends.tiered import tiered_url

        schema = f"sk_{mode.replace('-', '_')}_{ctx.n}"  # not _postgres's: both may run in one session
        return tiered_url(_redis(ctx), f"{ctx.servers.postgres().url}?schema={schema}", mode=mode, **options)

    return factory


BACKENDS: dict[str, Callable[[BackendContext], str]] = {
    "memory": lambda ctx: f"memory://test-{ctx.n}",
    "sqlite": lambda ctx: f"sqlite:///{ctx.tmp_path}/store.db",
    "files": lambda ctx: f"file://{ctx.tmp_path}/files-store",
    "postgres": _postgres,
    "redis": _redis,
    "dynamodb": _dynamodb,
    "tiered": _tiered("write-through"),
    "tiered-wb": _tiered("write-behind", flush_every=3, flush_interval=0.05),  # flushes happen mid-test
}


PROCESS_LOCAL: set[str] = {"memory"}
"""Backends whose data lives in one process: tests marked ``multiprocess`` skip them."""


def register_backend(name: str, factory: Callable[[BackendContext], str], *, process_local: bool = False) -> None:
    """Make ``name`` selectable with ``--statekeel-backends``.

    ``factory(ctx)`` returns the URL of a fresh, empty store (use ``ctx.tmp_path``
    or ``ctx.n`` to keep tests apart). ``process_local=True`` says the data lives
    in this process only, like ``memory://``: tests that share a store between
    processes skip it.
    """
    BACKENDS[name] = factory
    if process_local:
        PROCESS_LOCAL.add(name)
    else:
        PROCESS_LOCAL.discard(name)
