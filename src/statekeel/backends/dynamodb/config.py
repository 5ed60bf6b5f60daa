"""``dynamodb://TABLE?region=…&endpoint=…&timeout=…``: the URL, checked, and the boto3 client it opens.

Credentials come from boto3's usual chain (environment, ``~/.aws``, instance role),
never from the URL, so a URL can be logged as it is. Any option other than
``region``, ``endpoint`` and ``timeout`` is refused, naming the nearest valid one.
"""

from __future__ import annotations

import re
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
    """A low-level boto3 DynamoDB client for ``config``.

    botocore's own retries stay on for throttling and 5xx replies: every
    ``TransactWriteItems`` carries a ``ClientRequestToken``, so DynamoDB applies a
    re-sent batch once.
    """
    region = config.region
    if region is None and config.endpoint is not None:
        region = boto3.session.Session().region_name or _DEFAULT_REGION
    boto = BotoConfig(
        connect_timeout=config.timeout,
        read_timeout=config.timeout,
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    return boto3.session.Session().client("dynamodb", region_name=region, endpoint_url=config.endpoint, config=boto)
