"""Resumable runs: a multi-step job whose step results are stored as they finish.

    with store.run("report-2026-11-21") as run:
        words = run.step("generate", make_words, 12)     # memoised by (run, step name)
        ranked = run.step("sort", sorted, words)
        answer = run.wait_for("approve", prompt="Publish?")
        run.step("publish", publish, ranked, answer)
    if run.suspended:                                    # waiting for a human
        print(run.suspended); sys.exit(0)

Running the same run id again replays the script: a step that finished returns
its stored result without running (results are never recomputed), so the job
resumes at the first unfinished step however the last process stopped. A step
that raised is retried on the next run, up to ``max_attempts``; its error and
every attempt's timing are kept. ``wait_for`` suspends the run by raising
:class:`RunSuspended` (the ``with`` block absorbs it, so a script exits cleanly)
until ``store.resume_run(run_id, name, value)`` supplies the value — from any
process, days later — and the run is started again. The decorator form is
``@run.stepfn`` (the step is named after the function).

Backend layout of run ``R`` (one partition, ``run/R``)::

    run/R/meta          {"status", "waiting_for", "prompt", "error", "steps_done", "last_step"}
    run/R/step/<name>   {"kind", "status", "result", "attempts", "error", timings, "history"}
    run/R/input/<name>  the value resume_run supplied to wait_for(<name>); create-only
    idx/runs/R          {}: what store.runs() scans; written before the run's first record

A step's record is written in one batch with a compare-and-set of the meta
record: two processes running the same step record one result (the loser
returns the winner's), and ``store.cancel_run`` from another process stops a run
at its next step boundary. Two writes per step: before it runs, the step is
recorded as started (its attempt, the function's fingerprint, a busy marker its
heartbeat renews while it executes — :mod:`.run_liveness`), and after it, its
result. ``store.run(id, lease="30s")`` makes the handle the run's only writer
(:mod:`.leases`): every write is fenced, so two processes holding one run never
execute a step concurrently.
"""

from __future__ import annotations

import functools
import shlex
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ..core import Core, layout
from ..core.validate import check_int, check_name
from ..errors import ConflictError, InvalidInputError, SerializationError, StatekeelError
from ..protocol import ANY, Delete, Op, OpResult, Put, Record, keys
from ._duration import Duration, maybe_seconds
from .leases import BUSY_SECONDS, Heartbeat, Lease
from .run_liveness import busy_put, check_fingerprint, fingerprint, step_version
from .run_records import (
    _RETRIES,
    HISTORY_KEPT,
    RUN_STATUSES,
    RunCancelledError,
    RunInfo,
    RunStatus,
    RunSuspended,
    StepFailedError,
    StepInfo,
    _check_name,
    _error_text,
    _input_key,
    _meta_key,
    _scan_all,
    _steps_prefix,
    run_info,
)

__all__ = [
    "RUN_STATUSES",
    "Run",
    "RunCancelledError",
    "RunInfo",
    "RunStatus",
    "RunSuspended",
    "StepFailedError",
    "StepInfo",
]

P = ParamSpec("P")
T = TypeVar("T")


# -- the run handle -----------------------------------------------------------------------
class Run:
    """A resumable multi-step job. Get it from ``store.run(run_id)``; use it in ``with``."""

    def __init__(self, store: Core, run_id: str, *, max_attempts: int = 3, lease: Duration | None = None) -> None:
        check_name(run_id, "a run id")
        check_int(max_attempts, "max_attempts", minimum=1)
        lease_s = maybe_seconds(lease, "lease")
        self._lease: Lease | None = None
        if lease_s is not None:  # before anything is read: the holder reads what the last holder wrote
            self._lease = Lease(store, layout.lease_key("run", run_id), f"run {run_id!r}", lease_s)
            self._lease.acquire()
        self._store = store
        self._backend = store.backend
        self.id = run_id
        self.max_attempts = max_attempts
        self._meta_key = _meta_key(run_id)
        self._prefix = _steps_prefix(run_id)
        self._meta = self._backend.get(self._meta_key)
        self._meta_decoded: tuple[Record | None, dict[str, Any]] = (None, {})
        self._steps = {keys.unescape(r.key[len(self._prefix) :]): r for r in _scan_all(store, self._prefix)}
        self.reused: list[str] = []
        """Steps of this process that returned a stored result."""
        self.executed: list[str] = []
        """Steps this process ran (or whose input it consumed) and recorded."""
        self.suspended: RunSuspended | None = None
        """Set when ``with`` absorbed a :class:`RunSuspended`: the run waits for input."""

    def __repr__(self) -> str:
        return f"<Run {self.id!r} {self._meta_body().get('status', 'new')}>"

    # -- steps -------------------------------------------------------------------
    def step(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, run once per run: a finished step returns its stored result.

        The result is stored in the same atomic write that marks the step
        completed; a replay returns the stored copy (values round-trip exactly
        through the codec). If ``fn`` raises, the attempt and its error are
        recorded, the run is marked failed and the exception propagates; the
        next run retries it until ``max_attempts`` attempts have failed.
        """
        return cast(T, self._step(_check_name(name), fn, step_version(fn), args, kwargs))

    def _step(self, name: str, fn: Callable[..., Any], version: str | int | None,
              args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:  # fmt: skip
        fp = fingerprint(fn)
        body = self._step_body(name, "step")
        for _ in range(_RETRIES):
            check_fingerprint(self.id, name, body, fp, version)
            if body is not None and body["status"] == "completed":
                self.reused.append(name)
                return body["result"]
            self._check_active()
            if body is not None and body["attempts"] >= self.max_attempts:
                raise StepFailedError(self.id, name, body["attempts"], body.get("error"))
            started = self._start(name, body, fp, version)
            if started is not None:
                break
            body = self._step_body(name, "step")  # another process wrote the step meanwhile
        else:
            raise ConflictError(self._prefix + keys.escape(name), None, None)
        begun, t0 = time.time(), time.perf_counter()
        with Heartbeat(self._beat, self._liveness / 3):
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self._record_failure(name, started, begun, time.perf_counter() - t0, exc)
                raise
        return self._record_success(name, started, begun, time.perf_counter() - t0, result)

    def _start(self, name: str, body: dict[str, Any] | None, fp: str, version: str | int | None) -> dict[str, Any] | None:
        """Record the step as started (its attempt, function and the busy marker); None if another
        process wrote the step first."""
        attempts = body["attempts"] if body else 0
        attempt = max(attempts, int(body.get("attempt") or 0) if body else 0) + 1  # killed ones count
        new = {
            "kind": "step", "status": "running", "result": None, "attempts": attempts, "attempt": attempt,
            "started_at": body["started_at"] if body else time.time(), "finished_at": None,
            "duration": None, "error": body.get("error") if body else None,
            "history": list(body["history"]) if body else [], "fn": fp, "version": version,
        }
        busy = busy_put(self._store, self.id, self._liveness)
        return new if self._write(name, new, lambda: self._running(name, completed=False), [busy]) else None

    def _beat(self) -> bool:
        """While a step executes: renew the busy marker (and the lease, if held)."""
        self._apply([busy_put(self._store, self.id, self._liveness)])
        return True

    @property
    def _liveness(self) -> float:
        """How long an executing step counts as alive after its last heartbeat."""
        return min(BUSY_SECONDS, self._lease.seconds) if self._lease else BUSY_SECONDS

    @overload
    def stepfn(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    @overload
    def stepfn(
        self, fn: None = None, /, *, name: str | None = None, version: str | int | None = None
    ) -> Callable[[Callable[P, T]], Callable[P, T]]: ...

    def stepfn(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None, version: str | int | None = None
    ) -> Any:
        """Decorator: calling the function runs it as step ``name`` (default: its name).

        ``version`` declares a deliberate change of the function: a step recorded by
        another function is refused unless the versions differ
        (:mod:`statekeel.features.run_liveness`).

        A step is memoised by name, so call a decorated function once per run;
        for repeated calls use ``run.step(f"fetch-{i}", fetch, i)``.
        """

        if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
            raise InvalidInputError(f"stepfn(version=) is a str or an int, got {version!r}")
        if name is not None:
            _check_name(name)  # '' is refused as run.step('') is, not replaced by the function's name

        def wrap(f: Callable[P, T]) -> Callable[P, T]:
            step_name = _check_name(f.__name__ if name is None else name)

            @functools.wraps(f)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return cast(T, self._step(step_name, f, version, args, kwargs))

            return wrapper

        return wrap(fn) if fn is not None else wrap

    def wait_for(self, name: str, *, prompt: str | None = None) -> Any:
        """The value supplied by ``store.resume_run(run_id, name, value)``, or suspend.

        Raises :class:`RunSuspended` (status ``waiting``) while nothing was
        supplied; once it was, returns it — and keeps returning it on re-runs.
        """
        body = self._step_body(_check_name(name), "wait")
        if body is not None and body["status"] == "completed":
            self.reused.append(name)
            return body["result"]
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a str, got {type(prompt).__name__}")
        for _ in range(_RETRIES):
            self._check_active()
            supplied = self._backend.get(_input_key(self.id, name))
            try:
                if supplied is not None:
                    return self._consume_input(name, body, supplied)
                self._suspend(name, body, prompt)
            except ConflictError:
                self._refresh(name)
                body = self._step_body(name, "wait")
                if body is not None and body["status"] == "completed":
                    return body["result"]
        raise ConflictError(self._meta_key, None, None)

    def _consume_input(self, name: str, body: dict[str, Any] | None, supplied: Record) -> Any:
        value = self._store.codec.decode(supplied.data, supplied.codec, supplied.key)
        now = time.time()
        started = body["started_at"] if body else supplied.created_at
        new = {
            "kind": "wait", "status": "completed", "result": value, "attempts": 1,
            "prompt": body.get("prompt") if body else None, "started_at": started,
            "finished_at": now, "duration": max(0.0, now - started), "error": None, "history": [],
        }
        self._commit(name, new, self._running(name, completed=True))
        self.executed.append(name)
        return value

    def _suspend(self, name: str, body: dict[str, Any] | None, prompt: str | None) -> None:
        meta = self._meta_body()
        already = body is not None and meta.get("status") == "waiting" and meta.get("waiting_for") == name
        if not already:
            new: dict[str, Any] = {
                "kind": "wait", "status": "waiting", "result": None, "attempts": 0, "prompt": prompt,
                "started_at": body["started_at"] if body else time.time(), "finished_at": None,
                "duration": None, "error": None, "history": [],
            }
            self._commit(name, new, {"status": "waiting", "waiting_for": name, "prompt": prompt})
        raise RunSuspended(self.id, name, prompt)

    # -- run status ------------------------------------------------------------------
    def info(self) -> RunInfo:
        """Status, steps, attempts and timings as stored now."""
        return run_info(self._store, self.id)

    def complete(self) -> None:
        """Mark the run completed (``with`` does this when the block ends normally)."""
        if self._meta_body().get("status") != "completed":
            self._update_meta({"status": "completed", "waiting_for": None, "prompt": None, "error": None})

    def fail(self, error: str) -> None:
        """Mark the run failed with ``error`` (``with`` does this when the block raises)."""
        if type(error) is not str:
            raise InvalidInputError(f"error must be a str saying what failed, got {type(error).__name__}")
        self._update_meta({"status": "failed", "error": error, "waiting_for": None, "prompt": None})

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            return self._exit(exc)
        finally:
            self.release()

    def _exit(self, exc: BaseException | None) -> bool:
        if exc is None:
            self.complete()
        elif isinstance(exc, RunSuspended) and exc.run_id == self.id:
            self.suspended = exc
            return True
        elif isinstance(exc, Exception) and not isinstance(exc, RunCancelledError):
            if self._meta_body().get("status") not in ("failed", "cancelled"):
                try:
                    self.fail(_error_text(exc))
                except RunCancelledError:
                    pass
        return False

    # -- writing -------------------------------------------------------------------------
    def _meta_body(self) -> dict[str, Any]:
        """The meta record's body (decoded once per version; do not mutate it)."""
        if self._meta is None:
            return {}
        if self._meta_decoded[0] is not self._meta:
            body = self._store.codec.decode(self._meta.data, self._meta.codec, self._meta.key)
            self._meta_decoded = (self._meta, body)
        return self._meta_decoded[1]

    def _step_body(self, name: str, kind: str) -> dict[str, Any] | None:
        rec = self._steps.get(name)
        if rec is None:
            return None
        body: dict[str, Any] = self._store.codec.decode(rec.data, rec.codec, rec.key)
        if body["kind"] != kind:
            use = "run.wait_for" if body["kind"] == "wait" else "run.step"
            raise InvalidInputError(f"{name!r} of run {self.id!r} is a {body['kind']} step; use {use}")
        return body

    def _check_active(self) -> None:
        if self._meta_body().get("status") == "cancelled":
            reason = self._meta_body().get("error")
            raise RunCancelledError(f"run {self.id!r} was cancelled ({reason or 'no reason given'})")

    def _running(self, name: str, *, completed: bool) -> dict[str, Any]:
        done = int(self._meta_body().get("steps_done", 0)) + (1 if completed else 0)
        return {"status": "running", "waiting_for": None, "prompt": None, "error": None,
                "last_step": name, "steps_done": done}

    def _record_success(self, name: str, body: dict[str, Any] | None, started: float, took: float, result: Any) -> Any:
        attempts = (body["attempts"] if body else 0) + 1
        new = {
            "kind": "step", "status": "completed", "result": result, "attempts": attempts,
            "started_at": body["started_at"] if body else started, "finished_at": time.time(),
            "duration": took, "error": body.get("error") if body else None,
            "history": _history(body, started, took, None), **_fn_of(body),
        }
        try:
            won = self._write(name, new, lambda: self._running(name, completed=True), [self._not_busy])
        except SerializationError as exc:
            self._record_failure(name, body, started, took, exc)
            raise
        if won:
            self.executed.append(name)
            return result
        stored = self._step_body(name, "step")
        if stored is None or stored["status"] != "completed":  # pragma: no cover - the winner completed it
            raise ConflictError(self._prefix + keys.escape(name), None, None)
        self.reused.append(name)
        return stored["result"]

    def _record_failure(
        self, name: str, body: dict[str, Any] | None, started: float, took: float, exc: BaseException
    ) -> None:
        error = _error_text(exc)
        new = {
            "kind": "step", "status": "failed", "result": None,
            "attempts": (body["attempts"] if body else 0) + 1,
            "started_at": body["started_at"] if body else started, "finished_at": None,
            "duration": None, "error": error, "history": _history(body, started, took, error), **_fn_of(body),
        }
        meta = {"status": "failed", "error": f"step {name!r}: {error}", "last_step": name}
        try:
            self._write(name, new, lambda: meta, [self._not_busy])
        except StatekeelError as write_error:
            exc.add_note(f"statekeel: the failed attempt of step {name!r} was not recorded: {write_error!r}")

    def _write(
        self, name: str, body: dict[str, Any], meta: Callable[[], dict[str, Any]], also: Sequence[Op] = ()
    ) -> bool:
        """Store step ``name`` (with ``also`` in the batch); False when another process stored it first."""
        for _ in range(_RETRIES):
            expected = self._steps.get(name)
            try:
                self._commit(name, body, meta(), also)
                return True
            except ConflictError:
                self._refresh(name)
                current = self._steps.get(name)
                if (current and current.version) != (expected and expected.version):
                    return False
                self._check_active()
        raise ConflictError(self._meta_key, None, None)

    def _commit(self, name: str, body: dict[str, Any], meta_update: dict[str, Any], also: Sequence[Op] = ()) -> None:
        """One atomic batch: the step record and a compare-and-set of the meta record."""
        key = self._prefix + keys.escape(name)
        data, codec = self._store.codec.encode(body, f"run {self.id!r} step {name!r}", key)
        expect = self._steps[name].version if name in self._steps else None
        meta_put, meta_body = self._meta_put(meta_update)
        self._ensure_listed()  # after encoding: a value the codec refuses lists no run
        step_rec, meta_rec = self._apply([Put(key, data, codec, expect), meta_put, *also])[:2]
        assert isinstance(step_rec, Record) and isinstance(meta_rec, Record)
        self._steps[name], self._meta, self._meta_decoded = step_rec, meta_rec, (meta_rec, meta_body)

    def _ensure_listed(self) -> None:
        """Write the index record before the run's first record: a crash leaves no run unlisted."""
        if self._meta is None:
            key = layout.run_index_key(self.id)
            data, codec = self._store.codec.encode({}, "run index record", key)
            self._backend.apply([Put(key, data, codec, ANY)])

    def _meta_put(self, update: dict[str, Any]) -> tuple[Put, dict[str, Any]]:
        body = {"status": "running", "waiting_for": None, "prompt": None, "error": None,
                "steps_done": 0, "last_step": None, **self._meta_body(), **update}
        data, codec = self._store.codec.encode(body, f"run {self.id!r} status", self._meta_key)
        return Put(self._meta_key, data, codec, None if self._meta is None else self._meta.version), body

    def _update_meta(self, update: dict[str, Any]) -> None:
        for _ in range(_RETRIES):
            self._check_active()
            put, body = self._meta_put(update)  # encoded first: a refused value writes nothing
            self._ensure_listed()
            try:
                rec = self._apply([put])[0]
                assert isinstance(rec, Record)
                self._meta, self._meta_decoded = rec, (rec, body)
                return
            except ConflictError:
                self._meta = self._backend.get(self._meta_key)
        raise ConflictError(self._meta_key, None, None)

    @property
    def _not_busy(self) -> Op:
        return Delete(layout.run_busy_key(self.id))

    def _apply(self, ops: Sequence[Op]) -> list[OpResult]:
        """Apply a batch of the run's partition, fenced by the lease if this handle holds one."""
        lease = self._lease
        if lease is None:
            return self._backend.apply(ops)
        with lease.lock:
            try:
                results = self._backend.apply([*ops, lease.op(time.time())])
            except ConflictError as err:
                raise lease.lost() or err from None
            lease.confirm(results.pop())
            return results

    @property
    def lease_token(self) -> int | None:
        """The fencing token of the lease this handle holds (None: opened without ``lease=``)."""
        return None if self._lease is None else self._lease.token

    def release(self) -> None:
        """Give up the lease (``with`` does this when the block ends)."""
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def _refresh(self, name: str) -> None:
        self._meta = self._backend.get(self._meta_key)
        rec = self._backend.get(self._prefix + keys.escape(name))
        if rec is None:
            self._steps.pop(name, None)
        else:
            self._steps[name] = rec


def _fn_of(body: dict[str, Any] | None) -> dict[str, Any]:
    """The fingerprint fields a step's start record carries on to its end record."""
    return {"fn": body.get("fn"), "version": body.get("version")} if body else {}


def _history(body: dict[str, Any] | None, started: float, took: float, error: str | None) -> list[dict[str, Any]]:
    past: list[dict[str, Any]] = list(body["history"]) if body else []
    return [*past, {"started_at": started, "duration": took, "error": error}][-HISTORY_KEPT:]
