"""Run records: what ``store.runs()`` and ``run.info()`` return, the signals a run raises, and reading them.

The run handle is :mod:`statekeel.features.runs`; listing, cancelling and
resuming from another process are in :mod:`statekeel.features.run_admin`.
"""

from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..core import Core, layout
from ..core.validate import check_name
from ..errors import InvalidInputError, NotFoundError, StatekeelError
from ..models import to_datetime
from ..protocol import Record, keys

__all__ = [
    "HISTORY_KEPT",
    "RUN_STATUSES",
    "RunCancelledError",
    "RunInfo",
    "RunStatus",
    "RunSuspended",
    "StepFailedError",
    "StepInfo",
    "run_info",
]

RunStatus = Literal["running", "waiting", "completed", "failed", "cancelled", "crashed"]
RUN_STATUSES: Final[tuple[str, ...]] = ("running", "waiting", "completed", "failed", "cancelled", "crashed")
INDEX_PREFIX: Final = layout.RUN_INDEX_PREFIX
HISTORY_KEPT: Final = 10
"""How many attempts per step keep their own timing and error."""
_RETRIES: Final = 100


# -- public records and signals ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a run as stored."""

    name: str
    """The step's name, unique within its run."""
    kind: Literal["step", "wait"]
    """``step`` (a function) or ``wait`` (``wait_for`` input)."""
    status: Literal["completed", "failed", "waiting", "running"]
    """``completed`` (result stored), ``failed`` (last attempt raised), ``waiting`` (for input) or
    ``running`` (an attempt started and has not finished: in flight, or killed)."""
    attempts: int
    """How many times the function ran and finished or raised (a killed attempt is not counted)."""
    started_at: dt.datetime | None
    """When the first recorded attempt started (UTC)."""
    finished_at: dt.datetime | None
    """When the result was stored (UTC); None until completed."""
    duration: float | None
    """Seconds the successful attempt took (for ``wait``: from suspension to input)."""
    error: str | None
    """``"<ExceptionType>: <message>"`` of the last failed attempt (kept after a later success)."""
    history: tuple[dict[str, Any], ...]
    """The last attempts: ``{"started_at", "duration", "error"}`` each."""
    attempt: int | None = None
    """While ``running``: the number of the attempt in flight (or that was killed)."""
    fn: str | None = None
    """The qualified name of the function that ran it (its fingerprint)."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What the store knows about a run."""

    id: str
    """The run id."""
    status: RunStatus
    """running, waiting (for ``resume_run``), completed, failed, cancelled or crashed (its
    process died: ``store.mark_stale_runs_crashed``; running it again resumes it)."""
    created_at: dt.datetime
    """When the run recorded its first step (UTC)."""
    updated_at: dt.datetime
    """When its status last changed or a step last finished (UTC)."""
    waiting_for: str | None
    """The ``wait_for`` step the run is suspended at, if waiting."""
    prompt: str | None
    """What the waiting step asks for."""
    error: str | None
    """Why the run failed or was cancelled."""
    steps_completed: int
    """How many steps have a stored result."""
    last_step: str | None
    """The step that finished or failed most recently."""
    steps: tuple[StepInfo, ...] = ()
    """Every step in the order they first ran (empty in ``store.runs()`` listings)."""


class RunSuspended(BaseException):
    """Raised by ``run.wait_for`` while the input is not supplied: the run is paused.

    A ``BaseException`` like ``KeyboardInterrupt``, so ``except Exception`` in
    agent code does not swallow it; ``with store.run(...)`` absorbs it and keeps
    it in ``run.suspended``. Its message says how to resume.
    """

    def __init__(self, run_id: str, step: str, prompt: str | None) -> None:
        self.run_id = run_id
        self.step = step
        self.prompt = prompt
        asks = f" ({prompt})" if prompt else ""
        super().__init__(
            f"run {run_id!r} is waiting for {step!r}{asks}. Supply it with "
            f"store.resume_run({run_id!r}, {step!r}, value) or `statekeel runs resume "
            f"{shlex.quote(run_id)} --step {shlex.quote(step)} --input JSON`, then run it again"
        )


class RunCancelledError(StatekeelError):
    """The run was cancelled (``store.cancel_run``); it runs no further step."""


class StepFailedError(StatekeelError):
    """A step raised on each of its ``max_attempts`` attempts; it is not run again."""

    def __init__(self, run_id: str, step: str, attempts: int, error: str | None) -> None:
        super().__init__(
            f"step {step!r} of run {run_id!r} failed {attempts} times (last: {error}); fix the cause "
            "and open the run with a higher max_attempts, or use a new run id"
        )
        self.run_id = run_id
        self.step = step
        self.attempts = attempts
        self.error = error


# -- keys (see statekeel.core.layout) -----------------------------------------------------------------------------
_meta_key = layout.run_meta_key
_input_key = layout.run_input_key
_steps_prefix = layout.run_steps_prefix


def _check_name(name: Any, what: str = "step name") -> str:
    """A step name follows the rule of every name (:mod:`statekeel.core.validate`)."""
    return check_name(name, f"a {what}")


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _scan_all(store: Core, prefix: str) -> list[Record]:
    out: list[Record] = []
    while recs := store.backend.scan(prefix, after=out[-1].key if out else None, limit=500):
        out.extend(recs)
    return out


# -- store-level operations -------------------------------------------------------------
def _info(store: Core, run_id: str, meta: Record, steps: list[Record]) -> RunInfo:
    body = store.codec.decode(meta.data, meta.codec, meta.key)
    prefix = _steps_prefix(run_id)
    bodies = [(keys.unescape(r.key[len(prefix) :]), store.codec.decode(r.data, r.codec, r.key)) for r in steps]
    bodies.sort(key=lambda nb: nb[1].get("started_at") or 0.0)  # the order the steps first ran
    infos = [_step_info(name, b) for name, b in bodies]
    return RunInfo(
        run_id, body["status"], to_datetime(meta.created_at), to_datetime(meta.updated_at),  # type: ignore[arg-type]
        body.get("waiting_for"), body.get("prompt"), body.get("error"),
        int(body.get("steps_done", 0)), body.get("last_step"), tuple(infos),
    )


def _step_info(name: str, b: dict[str, Any]) -> StepInfo:
    return StepInfo(
        name, b["kind"], b["status"], b["attempts"], to_datetime(b.get("started_at")),
        to_datetime(b.get("finished_at")), b.get("duration"), b.get("error"), tuple(b.get("history", ())),
        b.get("attempt") if b["status"] == "running" else None, b.get("fn"),
    )


def _require_meta(store: Core, run_id: str) -> Record:
    check_name(run_id, "a run id")
    rec = store.backend.get(_meta_key(run_id))
    if rec is None:
        raise NotFoundError(f"no run {run_id!r} has recorded anything; list runs with store.runs()")
    return rec


def run_info(store: Core, run_id: str) -> RunInfo:
    """A run's status and steps, read-only."""
    meta = _require_meta(store, run_id)
    return _info(store, run_id, meta, _scan_all(store, _steps_prefix(run_id)))
