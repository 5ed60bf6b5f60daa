import os
from collections.abc import Iterator
from typing import TypeVar

import pytest

from statekeel.testing.servers import ServerUnavailable

pytest_plugins = ["statekeel.testing.plugin"]

# The CLI's tables fit the terminal; test processes (pytest-xdist workers in particular) have none,
# and 80 columns would cut the values the CLI tests look for. tests/test_cli_display.py sets its own.
os.environ.setdefault("COLUMNS", "200")


def missing(reason: str) -> None:
    """A tool or server the test needs is absent: a failure in CI (which installs
    everything through scripts/test.sh), a skip on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this is a failure, not a skip: {reason}")
    pytest.skip(reason)


S = TypeVar("S", bound="_Startable")


class _Startable:
    def start(self: S) -> S: ...
    def stop(self) -> None: ...


def start_server(server: S) -> S:
    """``server.start()``; a server that cannot start is :func:`missing` (a failure in CI)."""
    try:
        return server.start()
    except ServerUnavailable as exc:
        missing(f"{type(server).__name__} cannot start: {exc}")
        raise  # not reached: missing() fails or skips


def running(server: S) -> Iterator[S]:
    """For a fixture: ``yield from running(RedisServer())`` starts it, yields it, stops it after."""
    started = start_server(server)
    try:
        yield started
    finally:
        started.stop()
