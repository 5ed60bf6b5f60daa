"""The options of a ``tiered://`` URL, checked, and the URL built back from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote, urlencode

from ...errors import ConfigurationError
from .._url import ParsedURL, split_url

Mode = Literal["write-through", "write-behind"]
OnHotFailure = Literal["fail", "write-through"]

OPTIONS: Final = ("hot", "cold", "mode", "flush_every", "flush_interval", "hot_ttl", "on_hot_failure", "lease")
_EXAMPLE: Final = (
    "tiered://?hot=redis%3A%2F%2Fhost%3A6379%2F0&cold=postgresql%3A%2F%2Fuser%40host%2Fdb&mode=write-behind"
)
FLUSH_EVERY_MAX: Final = 10_000_000
"""Most queued batches before a flush: each waits in Redis until it is replayed into PostgreSQL (the loss
window if Redis loses its data), so far more is a mistake; ``flush_interval`` flushes anyway."""
_HOT_SCHEMES: Final = ("redis", "rediss", "valkey")
_COLD_SCHEMES: Final = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class Settings:
    """How a tiered store behaves."""

    hot: str
    """URL of the Redis tier."""
    cold: str
    """URL of the PostgreSQL tier."""
    mode: Mode = "write-through"
    """``write-through``: a write returns once PostgreSQL committed; ``write-behind``: once Redis did."""
    flush_every: int = 100
    """Write-behind: flush to PostgreSQL after this many queued batches ..."""
    flush_interval: float = 1.0
    """... or this many seconds, whichever comes first (also the maintenance period)."""
    hot_ttl: float = 3600.0
    """A partition not written for this many seconds is evicted from Redis (it stays in PostgreSQL)."""
    on_hot_failure: OnHotFailure = "fail"
    """Write-behind with Redis down: ``fail`` (UnavailableError) or ``write-through`` (write PostgreSQL)."""
    lease: float = 10.0
    """Seconds the flusher lease lasts: how soon another process takes over from a dead flusher."""

    def __post_init__(self) -> None:
        _check_url(self.hot, "hot", _HOT_SCHEMES, "redis://host:6379/0")
        _check_url(self.cold, "cold", _COLD_SCHEMES, "postgresql://user@host/db")
        _one_of("mode", self.mode, ("write-through", "write-behind"))
        _one_of("on_hot_failure", self.on_hot_failure, ("fail", "write-through"))
        every = self.flush_every
        if not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= FLUSH_EVERY_MAX:
            raise ConfigurationError(
                f"flush_every={_shown(every)} must be a whole number from 1 to {FLUSH_EVERY_MAX:,}, e.g. 100"
            )
        for name in ("flush_interval", "hot_ttl", "lease"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 86_400 * 365:
                raise ConfigurationError(f"{name}={_shown(value)} must be a positive number of seconds, e.g. {name}=1")

    @classmethod
    def from_url(cls, url: ParsedURL) -> Settings:
        """The settings of ``tiered://?hot=…&cold=…``; anything unknown or misspelt is refused."""
        if url.netloc or url.path not in ("", "/"):
            raise ConfigurationError(
                f"{url.redacted}: a tiered URL has no host or path, only options; e.g. {_EXAMPLE}"
            )
        url.refuse_unknown(OPTIONS)
        for name in ("hot", "cold"):
            if not url.options.get(name):
                raise ConfigurationError(
                    f"{url.redacted} names no ?{name}= store; give both tiers URL-encoded, e.g. {_EXAMPLE}"
                )
        return cls(
            url.options["hot"], url.options["cold"], url.option("mode", "write-through"),  # type: ignore[arg-type]
            url.int_option("flush_every", 100, low=1, high=FLUSH_EVERY_MAX), url.float_option("flush_interval", 1.0),
            url.float_option("hot_ttl", 3600.0), url.option("on_hot_failure", "fail"),  # type: ignore[arg-type]
            url.float_option("lease", 10.0),
        )  # fmt: skip

    def url(self) -> str:
        """This configuration as a ``tiered://`` URL (inner URLs percent-encoded)."""
        query = {name: str(getattr(self, name)) for name in OPTIONS}
        return "tiered://?" + urlencode(query, quote_via=quote, safe="")


def tiered_url(hot: str, cold: str, **options: object) -> str:
    """The ``tiered://`` URL of ``hot`` (Redis) over ``cold`` (PostgreSQL), with options
    (``mode``, ``flush_every``, ``flush_interval``, ``hot_ttl``, ``on_hot_failure``, ``lease``).

    Example: ``statekeel.open(tiered_url("redis://r:6379/0", "postgresql://pg/db", mode="write-behind"))``.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(f"tiered_url() takes no option {', '.join(unknown)}; it takes: {', '.join(OPTIONS[2:])}")
    return Settings(hot, cold, **options).url()  # type: ignore[arg-type]


def _check_url(value: object, name: str, schemes: tuple[str, ...], example: str) -> None:
    if not isinstance(value, str) or value.split("://", 1)[0].lower() not in schemes:
        raise ConfigurationError(
            f"the {name} tier must be a {' or '.join(s + '://' for s in schemes)} URL (e.g. {example}), "
            f"got {_scheme_of(value)}; percent-encode it inside a tiered:// URL"
        )
    split_url(value)  # a malformed tier URL is refused before either tier is opened


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigurationError(f"{name}={value!r} is not valid; use one of: {', '.join(allowed)}")


def _shown(value: object) -> str:
    """``repr(value)``, shortened; never raises (an int of 5,000 digits has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= 40 else f"{text[:20]}…({len(text):,} chars)"


def _scheme_of(value: object) -> str:
    """What was given, without the rest of a URL (which may hold a password)."""
    if isinstance(value, str):
        return f"a {value.split('://', 1)[0]}:// URL" if "://" in value else "no URL"
    return f"a {type(value).__name__}"
