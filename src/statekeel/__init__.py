"""statekeel — durable state for AI agents.

    import statekeel
    store = statekeel.open()                 # SQLite under ./.statekeel/
    s = store.session("support-42", user="u-7", ttl="2h")
    s.append({"role": "user", "content": "My order is late"})
    s.history(last=20)
"""

from .aio import (
    AsyncConsumer,
    AsyncDecisionContext,
    AsyncEventStream,
    AsyncRun,
    AsyncSession,
    AsyncSessionBatch,
    AsyncSessionNotes,
    AsyncStateView,
    AsyncStore,
    open_async,
)
from .codec import Codec, Transform
from .errors import (
    ConfigurationError,
    ConflictError,
    ExpiredError,
    InvalidInputError,
    MigrationRequiredError,
    NotAStoreError,
    NotFoundError,
    RecordTooLargeError,
    SchemaTooNewError,
    SerializationError,
    StatekeelError,
    StoreError,
    UnavailableError,
    UsageError,
    KeyUnavailableError,
    SecretDetectedError,
    ErasedError,
    IntegrityError,
)
from .features.checkpoints import Checkpoint, CheckpointDiff
from .features.decisions import Decision, DecisionClosedError, DecisionContext
from .features.events import Consumer, Event, EventStream, Projection
from .features.notes import NoteRead, SessionNotes
from .features.runs import Run, RunCancelledError, RunInfo, RunSuspended, StepFailedError, StepInfo
from .features.sessions import Session, SessionBatch
from .features.state import Scope, StateView
from .features.upcasting import SchemaVersionError, Versioned, register_upcaster, schema, versioned
from .models import Item, Message, Page, SessionInfo
from .protocol import ANY
from .security import Encryption, Erasure, SecretGuard
from .store import DEFAULT_URL, Store, open

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "Checkpoint",
    "CheckpointDiff",
    "Consumer",
    "Event",
    "EventStream",
    "Projection",
    "SchemaVersionError",
    "Versioned",
    "register_upcaster",
    "schema",
    "versioned",
    "Encryption",
    "Erasure",
    "ErasedError",
    "IntegrityError",
    "KeyUnavailableError",
    "SecretDetectedError",
    "SecretGuard",
    "AsyncConsumer",
    "AsyncDecisionContext",
    "AsyncEventStream",
    "AsyncRun",
    "AsyncSession",
    "AsyncSessionBatch",
    "AsyncSessionNotes",
    "AsyncStateView",
    "AsyncStore",
    "DEFAULT_URL",
    "Codec",
    "ConfigurationError",
    "ConflictError",
    "Decision",
    "DecisionClosedError",
    "DecisionContext",
    "ExpiredError",
    "InvalidInputError",
    "Item",
    "Message",
    "MigrationRequiredError",
    "NotAStoreError",
    "NotFoundError",
    "NoteRead",
    "Page",
    "RecordTooLargeError",
    "Run",
    "RunCancelledError",
    "RunInfo",
    "RunSuspended",
    "SchemaTooNewError",
    "Scope",
    "SerializationError",
    "Session",
    "SessionBatch",
    "SessionInfo",
    "SessionNotes",
    "StateView",
    "StatekeelError",
    "StepFailedError",
    "StepInfo",
    "Store",
    "StoreError",
    "Transform",
    "UnavailableError",
    "UsageError",
    "open",
    "open_async",
    "__version__",
]
