"""The ``example://`` backend: an in-process store behind statekeel's backend protocol.

``example://NAME`` is shared by every handle of this process that opens ``NAME``;
plain ``example://`` is private to its handle. Nothing survives the process.

The storage is statekeel's reference backend (:class:`MemoryBackend`), so every
method below is one line. To write a real backend, keep the class, the URL
parsing and the method signatures, and replace each ``self._data`` call with
your storage; the conformance suite tells you when the behaviour matches.
"""

from __future__ import annotations

from collections.abc import Sequence

from statekeel.backends import ParsedURL, parse
from statekeel.backends.memory import MemoryBackend
from statekeel.errors import ConfigurationError
from statekeel.protocol import Backend, Entry, LogInfo, MigrationStatus, Op, OpResult, Record


class ExampleBackend(Backend):
    """``example://NAME``: an in-process store named ``NAME``.

    statekeel calls ``ExampleBackend(parsed_url, migrate=..., **options)`` with
    the backend options given to ``statekeel.open``.
    """

    def __init__(self, url: ParsedURL, *, migrate: bool = True) -> None:
        name = _store_name(url)
        self.url = url.redacted  # shown in errors and logs: never put a password here
        self._data = MemoryBackend(parse(f"memory://statekeel-example.{name}") if name else None)
        if migrate:  # a backend with a schema creates or upgrades it here
            self.migrate()

    # -- reads ---------------------------------------------------------------------
    def get(self, key: str, *, include_expired: bool = False) -> Record | None:
        return self._data.get(key, include_expired=include_expired)

    def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        return self._data.get_many(keys)

    def scan(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[Record]:
        return self._data.scan(prefix, after=after, limit=limit)

    def read(
        self,
        log: str,
        *,
        start: int = 1,
        stop: int | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        return self._data.read(log, start=start, stop=stop, limit=limit, reverse=reverse)

    def log_info(self, log: str) -> LogInfo | None:
        return self._data.log_info(log)

    def scan_logs(self, prefix: str, *, after: str | None = None, limit: int = 100) -> list[LogInfo]:
        return self._data.scan_logs(prefix, after=after, limit=limit)

    # -- writes --------------------------------------------------------------------
    def apply(self, ops: Sequence[Op], *, now: float | None = None) -> list[OpResult]:
        return self._data.apply(ops, now=now)

    def purge_expired(self, *, limit: int = 1000) -> int:
        return self._data.purge_expired(limit=limit)

    # -- lifecycle -----------------------------------------------------------------
    def migrate(self, *, check: bool = False) -> MigrationStatus:
        return self._data.migrate(check=check)

    def close(self) -> None:
        self._data.close()


def _store_name(url: ParsedURL) -> str:
    """``example://NAME`` -> ``NAME``; refuse what this backend does not understand."""
    if url.path not in ("", "/"):
        raise ConfigurationError(f"{url.redacted}: an example:// URL is just a name, e.g. example://my-agent")
    if url.options:
        raise ConfigurationError(
            f"{url.redacted}: example:// takes no ?options (got {', '.join(sorted(url.options))})"
        )
    return url.netloc
