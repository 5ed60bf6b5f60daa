"""statekeel — durable state for AI agents.

    import statekeel
    store = statekeel.open()                 # SQLite under ./.statekeel/
    s = store.session("support-42", user="u-7", ttl="2h")
    s.append({"role": "user", "content": "My order is late"})
    s.history(last=20)
"""

from .codec import Codec, Transform
from .errors import (
    ConfigurationError,
    ConflictError,
    LeaseLostError,
    ExpiredError,
    InvalidInputError,
    MigrationRequiredError,
    NotAStoreError,
    NotFoundError,
    RecordTooLargeError,
    SchemaTooNewError,
    SerializationError,
    StatekeelError,
    StoreClosedError,
    StoreError,
    UnavailableError,
    UsageError,
    KeyUnavailableError,
    SecretDetectedError,
    ErasedError,
    IntegrityError,
    CorruptionError,
    EmbedderMismatchError,
    MissingDependencyError,
)
from .features.checkpoints import Checkpoint, CheckpointDiff
from .features.context_render import ContextItem, Dropped, WorkingSet
from .features.summaries import Summary
from .features.decisions import Decision, DecisionClosedError, DecisionContext
from .features.events import Consumer, Event, EventStream, Projection
from .features.memory import Memory, MemoryHit, MemoryItem
from .features.notes import NoteRead, SessionNotes
from .features.run_records import RunCancelledError, RunInfo, RunSuspended, StepFailedError, StepInfo
from .features.retention import GcReport, Retention
from .features.runs import Run
from .features.sessions import Session, SessionBatch
from .features.state import Scope, StateView
from .features.upcasting import SchemaVersionError, Versioned, register_upcaster, schema, versioned
from .models import Item, Message, Page, SessionInfo
from .protocol import ANY
from .core.encryption import Encryption
from .core.tamper import Integrity
from .features.erasure import Erasure
from .security import SecretGuard
from .store import DEFAULT_URL, Store, open
from .shutdown import GracefulShutdown, ShutdownRequested

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from .aio import (
        AsyncConsumer,
        AsyncDecisionContext,
        AsyncEventStream,
        AsyncMemory,
        AsyncRun,
        AsyncSession,
        AsyncSessionBatch,
        AsyncSessionNotes,
        AsyncStateView,
        AsyncStore,
        open_async,
    )

    __version__: str

_ASYNC = frozenset({
    "AsyncConsumer", "AsyncDecisionContext", "AsyncEventStream", "AsyncMemory", "AsyncRun", "AsyncSession",
    "AsyncSessionBatch", "AsyncSessionNotes", "AsyncStateView", "AsyncStore", "open_async",
})  # fmt: skip


def __getattr__(name: str) -> _Any:
    """The asyncio API and ``__version__``, loaded when first asked for: a process that never uses
    asyncio does not import it (``import statekeel`` is a CLI's and every worker process's start)."""
    if name in _ASYNC:
        from . import aio

        value = getattr(aio, name)
    elif name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("statekeel")  # the one version source: pyproject.toml
        except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
            value = "0.0.0+unknown"
    else:
        raise AttributeError(f"module 'statekeel' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ASYNC, "__version__"})

__all__ = [
    "ANY",
    "AsyncConsumer",
    "AsyncDecisionContext",
    "AsyncEventStream",
    "AsyncMemory",
    "AsyncRun",
    "AsyncSession",
    "AsyncSessionBatch",
    "AsyncSessionNotes",
    "AsyncStateView",
    "AsyncStore",
    "Checkpoint",
    "CheckpointDiff",
    "Codec",
    "ConfigurationError",
    "ConflictError",
    "Consumer",
    "ContextItem",
    "CorruptionError",
    "DEFAULT_URL",
    "Decision",
    "DecisionClosedError",
    "DecisionContext",
    "Dropped",
    "EmbedderMismatchError",
    "Encryption",
    "ErasedError",
    "Erasure",
    "Event",
    "EventStream",
    "ExpiredError",
    "GcReport",
    "GracefulShutdown",
    "Integrity",
    "IntegrityError",
    "InvalidInputError",
    "Item",
    "KeyUnavailableError",
    "LeaseLostError",
    "Memory",
    "MemoryHit",
    "MemoryItem",
    "Message",
    "MigrationRequiredError",
    "MissingDependencyError",
    "NotAStoreError",
    "NotFoundError",
    "NoteRead",
    "Page",
    "Projection",
    "RecordTooLargeError",
    "Retention",
    "Run",
    "RunCancelledError",
    "RunInfo",
    "RunSuspended",
    "SchemaTooNewError",
    "SchemaVersionError",
    "Scope",
    "SecretDetectedError",
    "SecretGuard",
    "SerializationError",
    "Session",
    "SessionBatch",
    "SessionInfo",
    "SessionNotes",
    "ShutdownRequested",
    "StateView",
    "StatekeelError",
    "StepFailedError",
    "StepInfo",
    "Store",
    "StoreClosedError",
    "StoreError",
    "Summary",
    "Transform",
    "UnavailableError",
    "UsageError",
    "Versioned",
    "WorkingSet",
    "__version__",
    "open",
    "open_async",
    "register_upcaster",
    "schema",
    "versioned",
]
