"""``dynamodb://TABLE?region=…&endpoint=…&timeout=…``: the URL, checked, and the boto3 client it opens.

Credentials come from boto3's usual chain (environment, ``~/.aws``, instance role),
never from the URL, so a URL can be logged as it is. Any option other than
``region``, ``endpoint`` and ``timeout`` is refused, naming the nearest valid one.

Each open gets its own client (its own connection pool, closed with the store), made from one
boto3 session per process: a new session loads botocore's service model and endpoint data
again (~0.1 s idle, up to 1.5 s on a loaded machine, against ~3 ms for a client of a warm
session). The session is replaced when anything it reads changes — any ``AWS_*`` variable,
``HOME``, the AWS config or credentials file — so an open honours the settings of its moment,
as with a session of its own, and stores opened under different credentials never share one.
A forked child starts with no session (a parent's may hold locks taken by another thread).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config as BotoConfig

from ...errors import ConfigurationError
from .._url import ParsedURL

__all__ = ["OPTIONS", "DynamoConfig", "client", "parse_config"]

OPTIONS = ("region", "endpoint", "timeout")
_MAX_TIMEOUT = 86_400
"""The URL options a ``dynamodb://`` URL takes."""

_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
"""DynamoDB's own rule for table names."""

_DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class DynamoConfig:
    """What a ``dynamodb://`` URL says."""

    table: str
    """The one table holding the whole store (single-table design)."""
    region: str | None
    """``?region=``; None = boto3's default (``AWS_DEFAULT_REGION``, ``~/.aws/config``)."""
    endpoint: str | None
    """``?endpoint=http://host:port`` for a local DynamoDB-API server; None = AWS."""
    timeout: float
    """Seconds to connect and to wait for each reply."""


def parse_config(url: ParsedURL) -> DynamoConfig:
    """The checked configuration of ``url``, or :class:`ConfigurationError` naming what is wrong."""
    url.refuse_unknown(OPTIONS)
    table = unquote(url.netloc + url.path.rstrip("/"))
    if not _TABLE.fullmatch(table):
        raise ConfigurationError(
            f"{url.redacted}: {table!r} is not a DynamoDB table name (3-255 letters, digits, '_', '-', '.'); "
            "write dynamodb://TABLE?region=eu-west-1"
        )
    timeout = url.float_option("timeout", 10.0)
    if not 0 < timeout <= _MAX_TIMEOUT:  # botocore fails a huge one at the first call, as if DynamoDB were down
        raise ConfigurationError(
            f"?timeout= in {url.redacted.split('?', 1)[0]} must be a positive number of seconds up to "
            f"{_MAX_TIMEOUT:,}, e.g. ?timeout=10"
        )
    return DynamoConfig(table, url.options.get("region") or None, _endpoint(url), timeout)


def _endpoint(url: ParsedURL) -> str | None:
    raw = url.options.get("endpoint")
    if raw is None:
        return None
    parts = urlsplit(raw)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigurationError(
            f"?endpoint={raw!r} in {url.redacted} is not an http(s) URL; "
            "write e.g. ?endpoint=http://127.0.0.1:8000 for a local DynamoDB-API server"
        )
    return raw


def client(config: DynamoConfig) -> Any:
    """A new low-level boto3 DynamoDB client for ``config``, made from the process's shared session.

    botocore's own retries stay on for throttling and 5xx replies: every
    ``TransactWriteItems`` carries a ``ClientRequestToken``, so DynamoDB applies a
    re-sent batch once.
    """
    boto = BotoConfig(
        connect_timeout=config.timeout,
        read_timeout=config.timeout,
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    shared = _shared
    with shared.lock:  # a boto3 Session is not thread-safe; the clients it makes are
        session = shared.session()
        region = config.region
        if region is None and config.endpoint is not None:
            region = session.region_name or _DEFAULT_REGION
        return session.client("dynamodb", region_name=region, endpoint_url=config.endpoint, config=boto)


_AWS_FILES = (("AWS_CONFIG_FILE", "~/.aws/config"), ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))


def _settings() -> tuple[object, ...]:
    """Everything a new session reads to resolve region, profile and credentials."""
    env = sorted((name, value) for name, value in os.environ.items() if name.startswith("AWS_") or name == "HOME")
    return os.getpid(), tuple(env), tuple(_stamp(os.environ.get(var, default)) for var, default in _AWS_FILES)


def _stamp(path: str) -> tuple[object, ...]:
    """A file's identity and version: an edited (or created, or deleted) file stamps differently."""
    path = os.path.expanduser(path)
    try:
        st = os.stat(path)
    except OSError:
        return (path,)
    return path, st.st_ino, st.st_size, st.st_mtime_ns


class _Shared:
    """The session of the current settings (one at a time) and the lock guarding it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._session: boto3.session.Session | None = None

    def session(self) -> boto3.session.Session:
        """Call with :attr:`lock` held."""
        key = _settings()  # holds the pid too: a child forked without os.fork's hooks makes its own
        if self._session is None or key != self._key:
            self._session, self._key = boto3.session.Session(), key
        return self._session


_shared = _Shared()


def _forget_after_fork() -> None:
    global _shared
    _shared = _Shared()  # the parent's lock may have been held by one of its other threads


os.register_at_fork(after_in_child=_forget_after_fork)
