"""Parsing store URLs, shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from ..errors import ConfigurationError

SCHEMES: dict[str, str] = {
    "memory": "statekeel.backends.memory:MemoryBackend",
    "sqlite": "statekeel.backends.sqlite:SQLiteBackend",
    "file": "statekeel.backends.files:FilesBackend",
    "postgresql": "statekeel.backends.postgres:PostgresBackend",
    "postgres": "statekeel.backends.postgres:PostgresBackend",
    "redis": "statekeel.backends.redis:RedisBackend",
    "rediss": "statekeel.backends.redis:RedisBackend",
    "valkey": "statekeel.backends.redis:RedisBackend",
}

EXAMPLES = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, file:///dir, "
    "postgresql://user:pass@host:5432/db, redis://host:6379/0"
)


@dataclass(frozen=True)
class ParsedURL:
    """A store URL split into parts, with its query options."""

    raw: str
    scheme: str
    netloc: str
    path: str
    options: dict[str, str]

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (safe to log)."""
        parts = urlsplit(self.raw)
        if parts.password is None:
            return self.raw
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))

    def option(self, name: str, default: str) -> str:
        return self.options.get(name, default)

    def float_option(self, name: str, default: float) -> float:
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(f"?{name}={raw!r} in {self.redacted} must be a number") from None

    def int_option(self, name: str, default: int) -> int:
        return int(self.float_option(name, default))

    def sqlite_path(self) -> str:
        """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
        if self.netloc:
            raise ConfigurationError(
                f"{self.redacted}: SQLite URLs have no host; write sqlite:///relative.db "
                "or sqlite:////absolute/path.db"
            )
        path = unquote(self.path)[1:] if self.path.startswith("/") else unquote(self.path)
        if not path:
            raise ConfigurationError(f"{self.redacted}: the SQLite URL names no file; e.g. sqlite:///agent.db")
        return path

    def dir_path(self) -> str:
        """``file:///abs/dir`` -> ``/abs/dir``; ``file://./rel`` -> ``./rel``."""
        path = unquote(self.netloc + self.path) if self.netloc else unquote(self.path)
        if not path:
            raise ConfigurationError(f"{self.redacted}: the file URL names no folder; e.g. file:///srv/agent-state")
        return path


def parse(url: str) -> ParsedURL:
    """Split ``url`` or raise :class:`ConfigurationError` naming the supported schemes."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL must be a str, got {type(url).__name__}; e.g. {EXAMPLES}")
    if "://" not in url:
        raise ConfigurationError(f"{url!r} is not a store URL; use one of: {EXAMPLES}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(f"{url!r} is malformed ({exc}); use one of: {EXAMPLES}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"unknown store scheme {scheme + '://'!r} in {url!r}; supported: "
            f"{', '.join(s + '://' for s in SCHEMES)} (e.g. {EXAMPLES})"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    return ParsedURL(url, scheme, parts.netloc, parts.path, options)
