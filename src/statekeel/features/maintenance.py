"""Maintenance participants: store-wide work that ``gc`` runs for features living above the core.

``store.gc()`` / ``statekeel gc`` apply the sessions' retention caps and purge expired data
(:mod:`.retention`). Some stored data is owned by code the core must not import — LangGraph
threads written by :mod:`statekeel.integrations.langgraph` — and still falls under the store's
``Retention(checkpoints=K)``. Such code takes part in ``gc`` through this registry instead of
the core importing it:

* **built in**: statekeel's own integrations, named here by module path and a *probe* key prefix;
  ``gc`` imports one only when the store holds a record under its probe (a store without
  LangGraph threads never imports LangGraph), and skips it with a warning when its optional
  dependency is not installed;
* **registered**: ``register(name, task)`` at run time (a name already built in is replaced —
  e.g. a LangGraph saver with a custom serializer registers its own pruning).

A task takes the store's :class:`~statekeel.core.Core` and returns how many items it removed;
like the rest of ``gc`` it is maintenance, never run on the write path. A task that fails is
reported by a ``RuntimeWarning`` and the rest of ``gc`` goes on (expired data is still purged).
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ..core import Core, layout
from ..errors import InvalidInputError

__all__ = ["MaintenanceTask", "Participant", "participants", "register", "run_participants", "unregister"]

MaintenanceTask = Callable[[Core], int]
"""One participant's work on a store: returns how many items it removed."""


@dataclass(frozen=True, slots=True)
class Participant:
    """A named maintenance task, run only when the store holds a record under ``probe`` (if set)."""

    name: str
    task: MaintenanceTask
    probe: str | None = None


_BUILTIN: dict[str, tuple[str, str]] = {
    "langgraph": ("statekeel.integrations.langgraph.maintenance:prune_to_retention",
                  layout.LANGGRAPH_THREAD_INDEX_PREFIX),
}  # fmt: skip
"""name -> (``module:function``, probe prefix): imported on first use only."""

_lock = threading.Lock()
_registered: dict[str, Participant] = {}


def register(name: str, task: MaintenanceTask, *, probe: str | None = None) -> None:
    """Have ``gc`` run ``task(core)`` (replacing a participant of the same name, built in or not)."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"a maintenance participant needs a non-empty name, got {name!r}")
    if not callable(task):
        raise InvalidInputError(f"a maintenance participant's task must be callable (core -> int), got {task!r}")
    with _lock:
        _registered[name] = Participant(name, task, probe)


def unregister(name: str) -> None:
    """Stop running ``name`` (a built-in participant comes back)."""
    with _lock:
        _registered.pop(name, None)


def participants() -> list[str]:
    """Every participant's name, built in and registered, in the order ``gc`` runs them."""
    with _lock:
        return sorted({*_BUILTIN, *_registered})


def run_participants(core: Core) -> dict[str, int]:
    """Run every participant on ``core``: name -> items removed (those with nothing to do, or that
    failed, absent). A participant that fails is reported by a warning and the rest of ``gc``
    goes on: e.g. LangGraph threads written with a custom ``serde`` that the built-in task cannot
    read, until their own task is registered."""
    done: dict[str, int] = {}
    for name in participants():
        found = _resolve(core, name)
        if found is None:
            continue
        try:
            done[name] = found.task(core)
        except Exception as exc:  # a participant's data or code: reported, never blocking gc
            warnings.warn(
                f"gc could not run the {name} maintenance ({type(exc).__name__}: {exc}); the rest of gc "
                f"went on. If it reads data written with your own settings (a LangGraph saver's serde), "
                f"register its task: statekeel.features.maintenance.register({name!r}, task)",
                RuntimeWarning,
                stacklevel=3,
            )
    return done


def _resolve(core: Core, name: str) -> Participant | None:
    """The participant to run for ``name`` on ``core``, or None (its data is absent, or it cannot load)."""
    with _lock:
        registered = _registered.get(name)
    if registered is not None:
        if registered.probe is not None and not core.backend.scan(registered.probe, limit=1):
            return None
        return registered
    target, probe = _BUILTIN[name]
    if not core.backend.scan(probe, limit=1):
        return None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # the integration's optional dependency is not installed
        if (exc.name or "").partition(".")[0] == "statekeel":
            raise  # our own module: a bug, not a missing extra
        warnings.warn(
            f"gc skipped the {name} maintenance ({exc}): the store holds its data; install "
            f"'statekeel[{name}]' to apply retention to it",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    task: MaintenanceTask = getattr(module, attr)
    return Participant(name, task, probe)
