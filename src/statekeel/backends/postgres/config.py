"""The URL options of the PostgreSQL backend, and what is passed on to libpq."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ...errors import ConfigurationError
from .._url import ParsedURL

__all__ = ["OWN_OPTIONS", "Settings", "connect_kwargs", "dsn"]

OWN_OPTIONS = ("schema", "pool_min", "pool_max", "timeout", "prepare")
"""Query options statekeel reads itself; the rest of the URL goes to libpq."""


@dataclass(frozen=True, slots=True)
class Settings:
    """statekeel's own options of one URL, checked."""

    schema: str
    pool_min: int
    pool_max: int
    timeout: float
    prepare_threshold: int | None

    @classmethod
    def from_url(cls, url: ParsedURL) -> Settings:
        schema = url.option("schema", "statekeel")
        if not schema or "\x00" in schema or len(schema.encode()) > 63 or schema.startswith("pg_"):
            raise ConfigurationError(
                f"?schema={schema!r} in {url.redacted} is not a usable schema name; use 1 to 63 "
                "bytes without NUL and not starting with pg_ (reserved), e.g. ?schema=statekeel"
            )
        pool_min = url.int_option("pool_min", 1)
        pool_max = url.int_option("pool_max", max(10, pool_min))
        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise ConfigurationError(
                f"{url.redacted}: need 0 <= pool_min <= pool_max and pool_max >= 1, "
                f"got pool_min={pool_min} pool_max={pool_max}"
            )
        timeout = url.float_option("timeout", 10.0)
        if not timeout > 0:
            raise ConfigurationError(f"{url.redacted}: ?timeout= must be a positive number of seconds")
        return cls(schema, pool_min, pool_max, timeout, _prepare_threshold(url))


def _prepare_threshold(url: ParsedURL) -> int | None:
    raw = url.option("prepare", "on").lower()
    if raw not in ("on", "off"):
        raise ConfigurationError(f"?prepare={raw!r} in {url.redacted} must be 'on' (default) or 'off'")
    return None if raw == "off" else 5


def dsn(url: ParsedURL) -> str:
    """The URL for libpq: statekeel's own query options removed."""
    rest = {k: v for k, v in url.options.items() if k not in OWN_OPTIONS}
    return urlunsplit(urlsplit(url.raw)._replace(query=urlencode(rest)))


def connect_kwargs(url: ParsedURL, cfg: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": cfg.prepare_threshold}
    if "connect_timeout" not in url.options:
        kwargs["connect_timeout"] = max(2, math.ceil(cfg.timeout))
    return kwargs
