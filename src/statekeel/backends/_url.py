"""Splitting store URLs, shared by every backend (which scheme opens what is in ``__init__``)."""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from ..errors import ConfigurationError

_LOCAL_HOSTS = ("", "localhost")
"""``file://`` hosts that mean this machine: the path after them is absolute."""

_RELATIVE_HOSTS = (".", "..")
"""``file://./dir`` and ``file://../dir``: the documented spelling of a relative folder."""

_SECRET_OPTION = re.compile(r"(^|&)((?:ssl)?password)=[^&]*", re.IGNORECASE)
"""A query option holding a password (``?password=``, ``?sslpassword=``): masked in :attr:`ParsedURL.redacted`."""
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
"""What an integer option may be spelt as: ASCII digits, an optional sign (``1e3`` and ``2.0`` are refused)."""

EXAMPLES = (
    "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, file:///abs/dir, file://./rel/dir, "
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
        """The URL with any password replaced by ``***`` (safe to log): the one in the address and
        the query's ``?password=`` / ``?sslpassword=`` (libpq takes both there)."""
        out, parts = self.raw, urlsplit(self.raw)
        if parts.password is not None:
            out = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
        head, mark, query = out.partition("?")
        if _SECRET_OPTION.search(query):
            out = head + mark + _SECRET_OPTION.sub(r"\1\2=***", query)
        return out

    def option(self, name: str, default: str) -> str:
        return self.options.get(name, default)

    def float_option(self, name: str, default: float) -> float:
        """``?name=`` as a finite number (NaN and infinities are refused), else ``default``."""
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f"?{name}={raw!r} in {self.redacted} must be a number") from None
        if not math.isfinite(value):
            raise ConfigurationError(f"?{name}={raw!r} in {self.redacted} must be a finite number, e.g. ?{name}=10")
        return value

    def int_option(self, name: str, default: int, *, low: int, high: int) -> int:
        """``?name=`` as a whole number from ``low`` to ``high``, else ``default``; anything else
        (``1.5``, ``1e3``, a 30-digit number) is a :class:`ConfigurationError` naming the range."""
        raw = self.options.get(name)
        if raw is None:
            return default
        text = raw.strip()
        value = int(text) if _WHOLE_NUMBER.fullmatch(text) and len(text.lstrip("+-0")) <= len(str(high)) else None
        if value is None or not low <= value <= high:
            shown = raw if len(raw) <= 40 else raw[:20] + f"…({len(raw):,} chars)"
            raise ConfigurationError(
                f"{self._without_query()}: ?{name}={shown!r} is not a finite whole number from {low:,} to {high:,}; "
                f"fix it, e.g. ?{name}={default}"
            )
        return value

    def _without_query(self) -> str:
        """The redacted URL without its options (they may hold a password, ``?password=``)."""
        return self.redacted.split("?", 1)[0]

    def refuse_unknown(self, valid: Collection[str]) -> None:
        """Raise :class:`ConfigurationError` for any option not in ``valid``, naming the
        nearest valid spelling and listing them all (a misspelt option must never be ignored)."""
        for name in sorted(set(self.options) - set(valid)):
            near = difflib.get_close_matches(name, list(valid), n=1)
            hint = f"did you mean ?{near[0]}=? " if near else ""
            listed = ", ".join(sorted(valid)) or "none"
            raise ConfigurationError(
                f"{self.redacted}: unknown option ?{name}=; {hint}{self.scheme}:// URLs take: {listed}"
            )

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
        return self._usable_path(path)

    def dir_path(self) -> str:
        """``file:///abs/dir`` -> ``/abs/dir``; ``file://./rel`` -> ``./rel``; ``file://localhost/abs`` -> ``/abs``.

        Any other host is refused: ``file://name/dir`` would otherwise land somewhere
        nobody meant (RFC 8089 reads ``name`` as a host, not as a folder).
        """
        if self.netloc in _RELATIVE_HOSTS:
            path = unquote(self.netloc + self.path)
        elif self.netloc in _LOCAL_HOSTS:
            path = unquote(self.path)
        else:
            raise self._file_host_error()
        if not path:
            raise ConfigurationError(f"{self.redacted}: the file URL names no folder; e.g. file:///srv/agent-state")
        return self._usable_path(path)

    def _usable_path(self, path: str) -> str:
        """``path`` unless no file system could name it: a NUL, or a lone surrogate (no UTF-8)."""
        if "\x00" in path:
            raise ConfigurationError(f"{self.redacted}: the path holds a NUL character (%00), which no file name can")
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(
                f"{self.redacted!a}: the path holds a lone surrogate, which is not valid UTF-8; "
                "percent-encode the file name's UTF-8 bytes instead"
            ) from None
        return path

    def _file_host_error(self) -> ConfigurationError:
        rest = urlsplit(self.redacted).netloc + self.path
        return ConfigurationError(
            f"{self.redacted}: file:// URLs have no host, so this does not name the folder {rest!r}; "
            f"write file:///{rest} (absolute) or file://./{rest} (relative to the working directory)"
        )


def split_url(url: str) -> ParsedURL:
    """Split ``url`` or raise :class:`ConfigurationError`; the scheme is not checked here."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a store URL must be a str, got {type(url).__name__}; e.g. {EXAMPLES}")
    if "://" not in url:
        raise ConfigurationError(f"{url!r} is not a store URL; use one of: {EXAMPLES}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(f"{url!r} is malformed ({exc}); use one of: {EXAMPLES}") from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    options = dict(pairs)
    parsed = ParsedURL(url, parts.scheme.lower(), parts.netloc, parts.path, options)
    if len(options) < len(pairs):  # a repeated option: which one was meant cannot be guessed
        name, times = Counter(name for name, _ in pairs).most_common(1)[0]
        raise ConfigurationError(
            f"{parsed._without_query()}: the option ?{name}= is given {times} times; give each option once"
        )
    return parsed
