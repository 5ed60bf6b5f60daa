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
)
from .features.sessions import Session, SessionBatch
from .features.state import Scope, StateView
from .models import Item, Message, Page, SessionInfo
from .protocol import ANY
from .store import DEFAULT_URL, Store, open

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "DEFAULT_URL",
    "Codec",
    "ConfigurationError",
    "ConflictError",
    "ExpiredError",
    "InvalidInputError",
    "Item",
    "Message",
    "MigrationRequiredError",
    "NotAStoreError",
    "NotFoundError",
    "Page",
    "RecordTooLargeError",
    "SchemaTooNewError",
    "Scope",
    "SerializationError",
    "Session",
    "SessionBatch",
    "SessionInfo",
    "StateView",
    "StatekeelError",
    "Store",
    "StoreError",
    "Transform",
    "UnavailableError",
    "UsageError",
    "open",
    "__version__",
]
