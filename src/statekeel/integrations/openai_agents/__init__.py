"""The OpenAI Agents SDK over statekeel: a ``Session`` on any statekeel URL.

    pip install 'statekeel[openai-agents]'

    from statekeel.integrations.openai_agents import StatekeelSession
    session = StatekeelSession.from_url("chat-42", "sqlite:///agent.db")
    await Runner.run(agent, "Hello", session=session)

See docs/openai-agents.md.
"""

from .compaction import StatekeelCompactionSession
from .session import StatekeelSession, TenantOf

__all__ = ["StatekeelCompactionSession", "StatekeelSession", "TenantOf"]
