"""LangGraph threads under ``store.gc()`` / ``statekeel gc``: the store's checkpoint cap applied.

:mod:`statekeel.features.maintenance` names :func:`prune_to_retention` as a built-in
participant, imported by ``gc`` only when the store holds LangGraph threads. It prunes every
thread to the store's ``Retention(checkpoints=K)`` exactly as
:meth:`StatekeelSaver.apply_retention` does (what is kept stays restorable).

It reads checkpoint metadata with LangGraph's default serializer. A saver built with another
``serde`` (e.g. LangGraph's encrypted one) registers its own task instead::

    from statekeel.features import maintenance
    maintenance.register("langgraph", lambda core: StatekeelSaver(core, serde=my_serde).apply_retention())
"""

from __future__ import annotations

from ...core import Core
from .saver import StatekeelSaver

__all__ = ["prune_to_retention"]


def prune_to_retention(core: Core) -> int:
    """Prune every LangGraph thread of ``core`` to the store's checkpoint cap; returns checkpoints removed."""
    saver = StatekeelSaver(core)
    try:
        return saver.apply_retention()
    finally:
        saver.close()
