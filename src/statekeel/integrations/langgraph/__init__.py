"""LangGraph over statekeel: a checkpointer and a long-term store on any statekeel URL.

    pip install 'statekeel[langgraph]'

    from statekeel.integrations.langgraph import StatekeelSaver
    saver = StatekeelSaver.from_url("sqlite:///agent.db")
    graph = builder.compile(checkpointer=saver)

See docs/langgraph.md.
"""

from ._records import CheckpointForkError
from .saver import StatekeelSaver
from .store import StatekeelStore

__all__ = ["CheckpointForkError", "StatekeelSaver", "StatekeelStore"]
