"""pytest plugin: runs every conformance test against every selected backend.

Use it from a ``conftest.py``::

    pytest_plugins = ["statekeel.testing.plugin"]

and choose backends with ``--statekeel-backends=memory,sqlite,postgres,redis,files``
(default: all of them). PostgreSQL and Redis are real servers started once per
test session on free loopback ports (see :mod:`statekeel.testing.servers`).
When the environment variable ``CI`` is set, a server that cannot start fails
the run; otherwise its tests are skipped with the reason.

A third-party backend joins the suite by registering a factory that returns
the URL of a fresh, empty store, from a pytest plugin of its own (a ``pytest11``
entry point, or a ``conftest.py``)::

    from statekeel.testing import register_backend
    register_backend("mybackend", lambda ctx: f"mybackend:///{ctx.tmp_path}/x")

then ``pytest -p statekeel.testing.plugin --statekeel-backends=mybackend --pyargs
statekeel.testing.conformance``; docs/writing-a-backend.md has a complete example.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import statekeel

from . import BACKENDS, PROCESS_LOCAL, BackendContext, ServerPool

ALL = ("memory", "sqlite", "files", "postgres", "redis")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--statekeel-backends",
        default=None,
        help="comma-separated backends the conformance suite runs on (default: $STATEKEEL_TEST_BACKENDS, "
        "else memory, sqlite, files, postgres and redis)",
    )


def _chosen(config: pytest.Config) -> str | None:
    """What ``--statekeel-backends`` (or ``STATEKEEL_TEST_BACKENDS``) names; None when neither is given."""
    given = config.getoption("--statekeel-backends")
    return str(given) if given is not None else os.environ.get("STATEKEEL_TEST_BACKENDS")


def requested_backends(config: pytest.Config) -> list[str]:
    """The names given to ``--statekeel-backends``, registered or not."""
    chosen = _chosen(config)
    return [b.strip() for b in (",".join(ALL) if chosen is None else chosen).split(",") if b.strip()]


def selected_backends(config: pytest.Config) -> list[str]:
    """The requested backends that are registered (the others stop the run after collection)."""
    return [n for n in requested_backends(config) if n in BACKENDS]


def pytest_collection_modifyitems(config: pytest.Config) -> None:
    # After collection, so a backend registered by any conftest.py counts.
    unknown = [n for n in requested_backends(config) if n not in BACKENDS]
    if unknown:
        pytest.exit(
            f"--statekeel-backends names {', '.join(unknown)}, which no plugin registered; "
            f"registered: {', '.join(BACKENDS)}. A third-party backend registers itself with "
            "statekeel.testing.register_backend() from its pytest plugin (docs/writing-a-backend.md)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "multiprocess: needs a store shared between processes")
    config.addinivalue_line(
        "markers",
        "statekeel_backends(*names): run on these backends instead of the default five (a module's "
        "``pytestmark``); with --statekeel-backends given, on those of them it names",
    )


def _backends_for(metafunc: pytest.Metafunc) -> list[str]:
    """The backends a test runs on: the selected ones, or those its ``statekeel_backends`` mark names."""
    mark = metafunc.definition.get_closest_marker("statekeel_backends")
    if mark is None:
        return selected_backends(metafunc.config)
    chosen = None if _chosen(metafunc.config) is None else set(requested_backends(metafunc.config))
    return [n for n in mark.args if n in BACKENDS and (chosen is None or n in chosen)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        names = _backends_for(metafunc)
        if metafunc.definition.get_closest_marker("multiprocess"):
            names = [n for n in names if n not in PROCESS_LOCAL]
        metafunc.parametrize("backend_name", names, scope="function")


@pytest.fixture(scope="session")
def statekeel_servers() -> Iterator[ServerPool]:
    """Real servers, started on first use and stopped at the end of the session."""
    pool = ServerPool(required=bool(os.environ.get("CI")))
    try:
        yield pool
    finally:
        pool.stop()


_counter = itertools.count()


@pytest.fixture
def store_url(backend_name: str, tmp_path: Path, statekeel_servers: ServerPool) -> str:
    """A URL of a fresh, empty store on ``backend_name``."""
    ctx = BackendContext(tmp_path=tmp_path, servers=statekeel_servers, n=next(_counter))
    try:
        return BACKENDS[backend_name](ctx)
    except ServerPool.Missing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def store(store_url: str) -> Iterator[statekeel.Store]:
    """An open store on a fresh backend; closed after the test."""
    s = statekeel.open(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def open_store(store_url: str) -> Iterator[Any]:
    """A function opening more handles on the same store (closed after the test)."""
    opened: list[statekeel.Store] = []

    def _open(**options: Any) -> statekeel.Store:
        s = statekeel.open(store_url, **options)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()
