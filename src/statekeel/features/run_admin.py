"""Run administration from any process: list runs, cancel one, supply a waiting step's input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import Core, layout
from ..core.validate import check_limit, check_name, check_optional_name
from ..errors import ConflictError, InvalidInputError
from ..protocol import Put, Record, keys
from .run_liveness import is_stale
from .run_records import (
    _RETRIES,
    INDEX_PREFIX,
    RUN_STATUSES,
    RunInfo,
    RunStatus,
    _check_name,
    _info,
    _input_key,
    _meta_key,
    _require_meta,
    _steps_prefix,
    run_info,
)

__all__ = ["cancel_run", "list_runs", "mark_stale_runs_crashed", "resume_run"]


def list_runs(
    store: Core, *, status: RunStatus | None, after: str | None, limit: int, stale_after: float | None = None
) -> tuple[list[RunInfo], str | None]:
    """One page of runs (without their steps) in id order, and the next cursor.

    ``stale_after``: only running runs silent that long and not alive (no live lease, no
    step executing) — their process died (:mod:`.run_liveness`)."""
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInputError(f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    if stale_after is not None and status not in (None, "running"):
        raise InvalidInputError(
            f"stale_after only applies to running runs, so status={status!r} would match nothing; "
            "drop one of the two filters"
        )
    check_limit(limit)
    check_optional_name(after, "after (a run id from page.next)")
    out: list[RunInfo] = []
    cursor = layout.run_index_key(after) if after is not None else None
    while idx := store.backend.scan(INDEX_PREFIX, after=cursor, limit=max(limit, 100)):
        ids = [keys.split(r.key)[-1] for r in idx]
        for run_id, meta in zip(ids, store.backend.get_many([_meta_key(i) for i in ids])):
            if meta is None:
                continue
            info = _info(store, run_id, meta, [])
            if stale_after is not None and not is_stale(store, info, meta, stale_after):
                continue
            if status is None or info.status == status:
                out.append(info)
                if len(out) == limit:
                    return out, run_id
        if len(idx) < max(limit, 100):  # a short page is the last: no empty scan to find that out
            break
        cursor = idx[-1].key
    return out, None


def mark_stale_runs_crashed(store: Core, stale_after: float) -> list[RunInfo]:
    """Mark ``crashed`` every running run silent for ``stale_after`` and not alive; return them.

    Each is checked again at the compare-and-set: a run that moved on meanwhile is spared.
    """
    out: list[RunInfo] = []
    after: str | None = None
    while True:
        page, after = list_runs(store, status=None, after=after, limit=200, stale_after=stale_after)
        for found in page:
            def change(body: dict[str, Any], meta: Record, rid: str = found.id) -> dict[str, Any] | None:
                info = _info(store, rid, meta, [])
                return {"status": "crashed"} if is_stale(store, info, meta, stale_after) else None

            info = _update(store, found.id, change)
            if info.status == "crashed":
                out.append(info)
        if after is None:
            return out


def _update(store: Core, run_id: str, change: Callable[[dict[str, Any], Record], dict[str, Any] | None]) -> RunInfo:
    """Compare-and-set the meta record with ``change(body, record)`` (None = no write)."""
    for _ in range(_RETRIES):
        meta = _require_meta(store, run_id)
        body = store.codec.decode(meta.data, meta.codec, meta.key)
        new = change(body, meta)
        if new is None:
            return run_info(store, run_id)
        data, codec = store.codec.encode({**body, **new}, f"run {run_id!r} status", meta.key)
        try:
            store.backend.apply([Put(meta.key, data, codec, meta.version)])
            return run_info(store, run_id)
        except ConflictError:
            continue
    raise ConflictError(_meta_key(run_id), None, None)


def cancel_run(store: Core, run_id: str, reason: str | None = None) -> RunInfo:
    """Mark the run cancelled: it runs no further step, in any process."""
    check_name(run_id, "a run id")
    if reason is not None and not isinstance(reason, str):
        raise InvalidInputError(f"reason must be a str, got {type(reason).__name__}")

    def change(body: dict[str, Any], meta: Record) -> dict[str, Any] | None:
        if body["status"] == "cancelled":
            return None
        if body["status"] == "completed":
            raise InvalidInputError(f"run {run_id!r} already completed; there is nothing to cancel")
        return {"status": "cancelled", "error": reason or "cancelled", "waiting_for": None, "prompt": None}

    return _update(store, run_id, change)


def resume_run(store: Core, run_id: str, name: str | None, value: Any) -> RunInfo:
    """Supply ``value`` to ``wait_for(name)`` (default: the step the run waits at)."""
    check_name(run_id, "a run id")
    if name is not None:
        _check_name(name)
    for _ in range(_RETRIES):
        meta = _require_meta(store, run_id)
        body = store.codec.decode(meta.data, meta.codec, meta.key)
        step = _resumable_step(run_id, body, name)
        step_rec = store.backend.get(_steps_prefix(run_id) + keys.escape(step))
        if step_rec is not None and store.codec.decode(step_rec.data, step_rec.codec, step_rec.key)["status"] == "completed":
            raise InvalidInputError(f"step {step!r} of run {run_id!r} already has its input")
        key = _input_key(run_id, step)
        data, codec = store.codec.encode(value, f"input for run {run_id!r} step {step!r}", key)
        waiting = body.get("waiting_for") == step
        new_meta = {**body, **({"status": "running", "waiting_for": None, "prompt": None} if waiting else {})}
        meta_data, meta_codec = store.codec.encode(new_meta, f"run {run_id!r} status", meta.key)
        try:
            store.backend.apply([Put(key, data, codec, None), Put(meta.key, meta_data, meta_codec, meta.version)])
            return run_info(store, run_id)
        except ConflictError:
            if store.backend.get(key) is not None:
                raise InvalidInputError(
                    f"input for step {step!r} of run {run_id!r} was already supplied; it is used as given"
                ) from None
    raise ConflictError(_meta_key(run_id), None, None)


def _resumable_step(run_id: str, body: dict[str, Any], name: str | None) -> str:
    if body["status"] in ("cancelled", "completed"):
        raise InvalidInputError(f"run {run_id!r} is {body['status']}; it takes no more input")
    if name is None:
        if body.get("waiting_for") is None:
            raise InvalidInputError(f"run {run_id!r} is not waiting for input; name the step to supply")
        return str(body["waiting_for"])
    return _check_name(name)
