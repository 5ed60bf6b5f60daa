"""Every error statekeel raises, in one tree with one root.

    StatekeelError
    ├── ConfigurationError          bad URL, unknown scheme, bad option
    │   ├── KeyUnavailableError     an encryption key is missing or wrong; names the key expected
    │   └── MissingDependencyError  an optional feature's package is missing; names the extra
    ├── InvalidInputError           wrong key/scope types, bad durations (also a ValueError)
    │   ├── SerializationError      a value cannot be encoded; names the path inside it
    │   ├── RecordTooLargeError     an encoded value exceeds the configured maximum
    │   └── SecretDetectedError     a credential was about to be stored; names the path
    ├── ConflictError               compare-and-set lost: the record changed meanwhile
    ├── LeaseLostError              another holder took this session's/run's lease over
    ├── NotFoundError               the record does not exist (also a KeyError)
    │   ├── ExpiredError            it existed but its TTL has passed
    │   └── ErasedError             its data subject was erased; it can never be read again
    ├── StoreError                  the store itself is not usable as is
    │   ├── NotAStoreError          the database holds something that is not statekeel's
    │   ├── SchemaTooNewError       written by a newer statekeel; upgrade the package
    │   ├── MigrationRequiredError  the schema is older than the code; run `statekeel migrate`
    │   ├── IntegrityError          a ciphertext was tampered with or moved to another record
    │   └── CorruptionError         stored bytes fail their checksum; names the record; run doctor
    ├── EmbedderMismatchError       stored vectors come from another embedder; run `memory reindex`
    ├── UnavailableError            the server is down or the connection broke; retry
    └── UsageError                  the API was used where it cannot work (sync call in a loop)
        └── StoreClosedError        the store was closed; open it again

Raised by feature modules, each a subclass of a class above:

    ConflictError  ← DecisionClosedError   (features.decisions) the decision already has an outcome
    ConflictError  ← CheckpointForkError   (integrations.langgraph) another writer moved the thread's head
    StatekeelError ← RunCancelledError     (features.runs) the run was cancelled
    StatekeelError ← StepFailedError       (features.runs) a step used up its attempts
    StoreError     ← SchemaVersionError    (features.upcasting) written by a newer payload schema
    NotAStoreError ← NotAnExportError      (portability) the folder is not a statekeel export
    StoreError     ← IncompleteExportError (portability) half-written or tampered export
    StoreError     ← ImportConflictError   (portability) the target already holds other data
    StoreError     ← VerificationError     (portability) source and copy differ
    UsageError     ← WritesDisabledError   (ui) a write asked of a read-only `statekeel ui` (HTTP 403)

``RunSuspended`` is not an error: it derives from BaseException so that a run
waiting for a person unwinds through ``except Exception`` in agent code.

Driver errors never escape: each backend translates them in one place with
:func:`translate` and ``raise … from exc``, so the original stays in ``__cause__``.
Every message says what went wrong and what to do about it; a failed call leaves
stored data unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

__all__ = [
    "StatekeelError",
    "ConfigurationError",
    "InvalidInputError",
    "SerializationError",
    "RecordTooLargeError",
    "ConflictError",
    "LeaseLostError",
    "NotFoundError",
    "ExpiredError",
    "StoreError",
    "NotAStoreError",
    "SchemaTooNewError",
    "MigrationRequiredError",
    "UnavailableError",
    "UsageError",
    "StoreClosedError",
    "KeyUnavailableError",
    "SecretDetectedError",
    "ErasedError",
    "IntegrityError",
    "CorruptionError",
    "MissingDependencyError",
    "EmbedderMismatchError",
    "maybe_applied",
    "translate",
]


class StatekeelError(Exception):
    """Root of every error statekeel raises."""

    maybe_applied: bool = False
    """True when a write was sent but its outcome is unknown (the connection broke after
    sending it, or a committed batch could not be finished): read back before retrying,
    or the retry may apply it twice. False: a failed call left stored data unchanged."""


class ConfigurationError(StatekeelError):
    """The store URL or an option is wrong: fix the configuration."""


class InvalidInputError(StatekeelError, ValueError):
    """An argument has the wrong type or form; nothing was written."""


class SerializationError(InvalidInputError):
    """A value cannot be stored; ``path`` says where inside the value."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class RecordTooLargeError(InvalidInputError):
    """An encoded value is larger than the store's ``max_record_bytes``."""

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ConflictError(StatekeelError):
    """A compare-and-set write found another version than it expected."""

    def __init__(self, key: str, expected: int | None, actual: int | None) -> None:
        want = "no record" if expected is None else f"version {expected}"
        have = "no record" if actual is None else f"version {actual}"
        super().__init__(
            f"conflict on {key!r}: expected {want} but the store has {have}; "
            "re-read and try again, or use update(key, fn) which retries for you"
        )
        self.key = key
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[type[ConflictError], tuple[str, int | None, int | None]]:
        return ConflictError, (self.key, self.expected, self.actual)  # picklable: crosses process pools


class LeaseLostError(StatekeelError):
    """This handle no longer holds the lease: it expired and another holder took it over
    (its token is higher), or it is held by another holder right now. Nothing was written;
    stop writing as this holder, and reopen with ``lease=`` to become the holder again."""

    def __init__(self, message: str, key: str, token: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.token = token


class NotFoundError(StatekeelError, KeyError):
    """The record does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ExpiredError(NotFoundError):
    """The record existed but its TTL has passed; it is no longer readable."""


class StoreError(StatekeelError):
    """The store itself cannot be used as it is."""


class NotAStoreError(StoreError):
    """The target holds data that statekeel did not write."""


class SchemaTooNewError(StoreError):
    """The store was written by a newer statekeel than this one."""


class MigrationRequiredError(StoreError):
    """The store's schema is older than the code and migrations are disabled."""


class KeyUnavailableError(ConfigurationError):
    """An encryption key needed to read or write is missing or is the wrong key."""


class SecretDetectedError(InvalidInputError):
    """A value holds what looks like a credential; ``path`` and ``kind`` say where and what."""

    def __init__(self, message: str, path: str, kind: str) -> None:
        super().__init__(message)
        self.path = path
        self.kind = kind


class ErasedError(NotFoundError):
    """The record belonged to an erased data subject; its key was destroyed."""


class IntegrityError(StoreError):
    """Authenticated decryption failed: the bytes were changed or copied from elsewhere."""


class CorruptionError(StoreError):
    """A stored record or log entry fails its checksum: the bytes were damaged at rest.

    ``key`` names the record or log, ``seq`` the log entry (None for a record).
    Never returned as data: run ``statekeel doctor`` to list every damaged record,
    then restore it from a backup or delete it.
    """

    def __init__(self, message: str, key: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.seq = seq


class UnavailableError(StatekeelError):
    """The backend cannot be reached right now; the next call reconnects."""

    def __str__(self) -> str:
        text = super().__str__()
        if not self.maybe_applied:
            return text
        return (f"{text}. A call made with idempotency_key= can simply be retried with the same key: "
                "it is applied at most once")


class UsageError(StatekeelError):
    """The API was called in a way that cannot work; the message says what to use."""


class StoreClosedError(UsageError):
    """The store was closed: nothing is read or written through it any more (a heartbeat left
    running under a forgotten block stops here). Open the store again."""

    @classmethod
    def of(cls, where: str, opener: str = "statekeel.open()") -> StoreClosedError:
        return cls(f"the store {where} was closed; open it again with {opener}")


class MissingDependencyError(ConfigurationError):
    """An optional feature needs a package that is not installed; the message names the extra."""


class EmbedderMismatchError(StatekeelError):
    """Stored memory vectors were made by another embedder (name or dimension): run
    ``statekeel memory reindex`` (or ``memory.reindex()``) to re-embed them."""


E = TypeVar("E", bound="StatekeelError")

DriverErrorMapper = Callable[[BaseException], StatekeelError | None]


@contextmanager
def translate(mapper: DriverErrorMapper) -> Iterator[None]:
    """Turn driver exceptions into statekeel errors, keeping the original as cause.

    ``mapper`` returns the statekeel error for a driver exception, or ``None`` to
    let it propagate unchanged (used for statekeel's own errors).
    """
    try:
        yield
    except StatekeelError:
        raise
    except Exception as exc:
        mapped = mapper(exc)
        if mapped is None:
            raise
        _raise_from(mapped, exc)


def maybe_applied(error: E) -> E:
    """``error`` marked :attr:`StatekeelError.maybe_applied` (its write may have reached storage)."""
    error.maybe_applied = True
    return error


def _raise_from(error: StatekeelError, cause: BaseException) -> NoReturn:
    raise error from cause
