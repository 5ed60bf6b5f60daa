"""The URL options of the PostgreSQL backend, and what is passed on to libpq."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from ...errors import ConfigurationError
from .._url import ParsedURL
from .sql import TENANT_SETTING

__all__ = ["LIBPQ_OPTIONS", "OWN_OPTIONS", "Settings", "connect_kwargs", "dsn", "tenant_options", "tenant_setting"]

OWN_OPTIONS = ("schema", "pool_min", "pool_max", "timeout", "prepare")
"""Query options statekeel reads itself; the rest of the URL goes to libpq."""

POOL_MAX = 10_000
"""Largest pool size accepted: ``?pool_min=1e6`` would have the pool open a million connections
in the background (PostgreSQL's own ceiling, max_connections, is 262,143; its default 100)."""

TIMEOUT_MAX = 86_400.0
"""Longest ``?timeout=`` accepted, a day: far longer is a mistake, and 1e300 overflows the clock."""

LIBPQ_OPTIONS = (
    # where and who
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service", "require_auth",
    "channel_binding", "application_name", "fallback_application_name", "options", "client_encoding",
    # waiting and liveness
    "connect_timeout", "tcp_user_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "target_session_attrs", "load_balance_hosts",
    # TLS
    "sslmode", "sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
    "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "sslkeylogfile", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "requirepeer", "min_protocol_version", "max_protocol_version",
    # Kerberos / GSSAPI and OAuth
    "gssencmode", "krbsrvname", "gsslib", "gssdelegation",
    "oauth_issuer", "oauth_client_id", "oauth_client_secret", "oauth_scope",
)  # fmt: skip
"""libpq connection parameters passed on from the URL's query. Listed, not
"whatever libpq takes", so a misspelt option is refused by name with the nearest
match instead of failing later at the driver; ``replication`` is left out on
purpose (statekeel cannot work over a replication connection)."""


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
        url.refuse_unknown((*OWN_OPTIONS, *LIBPQ_OPTIONS))
        schema = url.option("schema", "statekeel")
        if not schema or "\x00" in schema or len(schema.encode()) > 63 or schema.startswith("pg_"):
            raise ConfigurationError(
                f"?schema={schema!r} in {url.redacted} is not a usable schema name; use 1 to 63 "
                "bytes without NUL and not starting with pg_ (reserved), e.g. ?schema=statekeel"
            )
        pool_min = url.int_option("pool_min", 1, low=0, high=POOL_MAX)
        pool_max = url.int_option("pool_max", max(10, pool_min), low=1, high=POOL_MAX)
        if not 0 <= pool_min <= pool_max <= POOL_MAX or pool_max < 1:
            raise ConfigurationError(
                f"{url.redacted}: need 0 <= pool_min <= pool_max <= {POOL_MAX} and pool_max >= 1, "
                f"got pool_min={pool_min} pool_max={pool_max}"
            )
        url.int_option("connect_timeout", 10, low=0, high=int(TIMEOUT_MAX))  # libpq's; psycopg would take 1e30
        timeout = url.float_option("timeout", 10.0)
        if not 0 < timeout <= TIMEOUT_MAX:
            raise ConfigurationError(
                f"{url.redacted}: ?timeout= must be a positive number of seconds up to {TIMEOUT_MAX:.0f} "
                "(a day), e.g. ?timeout=10"
            )
        return cls(schema, pool_min, pool_max, timeout, _prepare_threshold(url))


def _prepare_threshold(url: ParsedURL) -> int | None:
    raw = url.option("prepare", "on").lower()
    if raw not in ("on", "off"):
        raise ConfigurationError(f"?prepare={raw!r} in {url.redacted} must be 'on' (default) or 'off'")
    return None if raw == "off" else 5


def dsn(url: ParsedURL) -> str:
    """The URL for libpq: statekeel's own query options removed."""
    rest = {k: v for k, v in url.options.items() if k not in OWN_OPTIONS}
    # %20, never "+": libpq does not read "+" as a space (?options=-c%20a=b)
    return urlunsplit(urlsplit(url.raw)._replace(query=urlencode(rest, quote_via=quote)))


def connect_kwargs(url: ParsedURL, cfg: Settings, tenant: str | None = None) -> dict[str, Any]:
    """psycopg's connection arguments for a pool of this store (sync or asyncio); with ``tenant``,
    every session of the pool belongs to that tenant (row-level security: :func:`tenant_options`)."""
    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": cfg.prepare_threshold}
    if "connect_timeout" not in url.options:
        kwargs["connect_timeout"] = max(2, math.ceil(cfg.timeout))
    if tenant is not None:
        kwargs["options"] = tenant_options(url, tenant_setting(tenant))
    return kwargs


def tenant_setting(tenant: str) -> str:
    """The value of ``statekeel.tenant`` for a tenant: hex, so any name is a safe option value."""
    return "t" + tenant.encode("utf-8", "surrogatepass").hex()


def tenant_options(url: ParsedURL, setting: str) -> str:
    """libpq ``options`` for a tenant's pool: the URL's own ``?options=`` kept (a
    keyword argument would replace them), the tenant setting last so that it wins."""
    own = f"-c {TENANT_SETTING}={setting}"
    given = url.options.get("options", "").strip()
    return f"{given} {own}" if given else own
