"""Run liveness: step fingerprints, the busy marker of an executing step, stale runs.

* **Fingerprint** — a step's record keeps the qualified name of the function
  that ran it (``module.qualname``) and its optional version. Calling a completed
  step with a different function is refused (:class:`InvalidInputError`) —
  replaying a run must not silently hand one function's result to another —
  unless the version differs from the recorded one, which says the change is
  deliberate: the stored result then stands (results are never recomputed).
  Give a version with ``@run.stepfn(version=2)`` or by setting
  ``fn.__step_version__``.
* **Busy marker** — while a step executes, ``run/<id>/busy`` holds an
  ``until`` its heartbeat keeps :data:`~.leases.BUSY_SECONDS` ahead; the step's
  own start and end records show which step and which attempt was in flight.
* **Stale runs** — a ``running`` run whose status record was not written for
  ``stale_after`` and that is not alive (no live lease, no live busy marker):
  its process died. :func:`mark_stale_runs_crashed` marks them ``crashed``;
  running the run again resumes it like any other.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from ..core import Core, layout
from ..errors import InvalidInputError
from ..protocol import Put, Record
from .leases import BUSY_SECONDS, lease_live
from .run_records import RunInfo

__all__ = ["busy_put", "check_fingerprint", "fingerprint", "is_stale", "run_alive", "step_version"]


def fingerprint(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of the function a step runs (a partial: of the function it wraps)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', None) or type(fn).__module__}.{name}"


def step_version(fn: Callable[..., Any]) -> str | int | None:
    """The version a step function declares (``__step_version__``), or None."""
    version = getattr(fn, "__step_version__", None)
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
        raise InvalidInputError(f"a step version is a str or an int, got {version!r}")
    return version


def check_fingerprint(
    run_id: str, name: str, body: dict[str, Any] | None, fp: str, version: str | int | None
) -> None:
    """Refuse a completed step called with another function at the same version (its stored
    result would be handed to the wrong caller). A failed or killed step may be retried with
    another function: nothing of the old one is returned."""
    if body is None or body["status"] != "completed" or body.get("fn") in (None, fp):
        return
    if body.get("version") != version:
        return
    raise InvalidInputError(
        f"step {name!r} of run {run_id!r} was recorded by {body['fn']} but is now called with {fp}; "
        "give the step another name, or — if the function changed on purpose — a new version "
        "(@run.stepfn(version=...) or fn.__step_version__): its stored result then stands"
    )


def busy_put(core: Core, run_id: str, seconds: float = BUSY_SECONDS) -> Put:
    """The marker saying a step of ``run_id`` executes, alive for ``seconds`` (the lease's, if
    the run holds a shorter one: a killed step is then noticed as soon as its lease ends)."""
    key = layout.run_busy_key(run_id)
    data, codec = core.codec.encode({"until": time.time() + min(seconds, BUSY_SECONDS)}, "run step in flight", key)
    return Put(key, data, codec)


def run_alive(core: Core, run_id: str) -> bool:
    """A live lease or an executing step: the run's process is alive, however long a step takes."""
    now = time.time()
    if lease_live(core, layout.lease_key("run", run_id), now):
        return True
    rec = core.backend.get(layout.run_busy_key(run_id))
    return rec is not None and float(core.codec.decode(rec.data, rec.codec, rec.key)["until"]) > now


def is_stale(core: Core, info: RunInfo, meta: Record, stale_after: float) -> bool:
    """Running, silent for ``stale_after`` seconds, and not alive."""
    return (
        info.status == "running" and time.time() - meta.updated_at > stale_after
        and not run_alive(core, info.id)
    )
