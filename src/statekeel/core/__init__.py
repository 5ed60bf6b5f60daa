"""The core features are written on: backend + codec + keyring, the key layout, the session write path.

Layers (enforced by ``lint-imports``, see ``.importlinter``)::

    protocol -> backends -> security (guard) -> codec -> core -> features -> store -> aio / portability -> cli
"""

from . import layout
from .context import Core
from .session_write import Committed, SessionCore, SessionPlan, SessionWrites, plan_session_write

__all__ = ["Committed", "Core", "SessionCore", "SessionPlan", "SessionWrites", "layout", "plan_session_write"]
