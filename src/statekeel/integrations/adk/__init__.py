"""Google ADK over statekeel: a ``SessionService`` and a ``MemoryService`` on any statekeel URL.

    pip install 'statekeel[adk]'

    from statekeel.integrations.adk import StatekeelSessionService
    service = StatekeelSessionService.from_url("sqlite:///agent.db")
    runner = Runner(agent=agent, app_name="support", session_service=service)

See docs/adk.md.
"""

from .memory_service import StatekeelMemoryService
from .session_service import SessionsPage, StatekeelSessionService

__all__ = ["SessionsPage", "StatekeelMemoryService", "StatekeelSessionService"]
