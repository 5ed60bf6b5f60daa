"""The Store: one handle on a backend, from which every feature is reached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

from ._loopguard import guard_backend, refuse_in_event_loop
from .backends import backend_options as _backend_options
from .backends import open_backend
from .backends.memory import MemoryBackend
from .backends.tenant import TenantBackend, tenant_prefix
from .codec import DEFAULT_MAX_RECORD_BYTES, Codec, Transform
from .core import Core
from .core.encryption import Cipher, Encryption, conversion_in_progress, prepare
from .core.chained import ChainedBackend
from .core.sealed import SealedBackend
from .core.anchor import anchor_from
from .features import verify as _verify
from .features.verify import VerifyReport
from .core.tamper import ChainSetup, Integrity, IntegritySetting, prepare_chain, read_marker
from .core.tenant_keyring import TenantKeyring
from .core.validate import check_name
from .errors import ConfigurationError, InvalidInputError, KeyUnavailableError, UsageError
from .features import decisions as _decisions
from .features import lifecycle as _lifecycle
from .features import retention as _retention
from .features import run_admin as _run_admin
from .features import session_index as _sessions
from .features._duration import Duration, maybe_seconds, seconds
from .features.decisions import Decision
from .features.erasure import Erasure, erase_subject
from .features.events import EventStream
from .features.memory import Embedder, Memory, list_namespaces as _memory_namespaces
from .features.run_records import RunInfo, RunStatus
from .features.retention import GcReport, Retention
from .features.runs import Run
from .features.sessions import Session, find_session, open_session
from .features.state import Scope, StateView, parse_scope
from .models import Page, SessionInfo, SessionStatus
from .protocol import Backend
from .protocol.capabilities import SupportsTenants
from .security.guard import GuardMode, SecretGuard

__all__ = ["Store", "open", "open_for_maintenance", "DEFAULT_URL"]

DEFAULT_URL = "sqlite:///.statekeel/state.db"


class Store(Core):
    """Durable agent state on one backend. Use :func:`statekeel.open` to get one.

    The public façade over :class:`~statekeel.core.Core` (backend, codec,
    keyring): every method delegates to a feature module.
    """

    def __init__(
        self, backend: Backend, codec: Codec | None = None, *, allow_in_event_loop: bool = False
    ) -> None:
        guard_backend(backend, allow_in_event_loop=allow_in_event_loop)  # see statekeel._loopguard
        super().__init__(backend, codec)
        self._allow_in_event_loop = allow_in_event_loop
        self._temp_backend = MemoryBackend()
        self._native_tenants: bool | None = None
        """Whether the backend keeps tenants apart itself (:class:`SupportsTenants`), once known."""

    @property
    def url(self) -> str:
        """The backend URL, password removed (a tenant handle: a description naming no address)."""
        return self.backend.url

    def __repr__(self) -> str:
        return f"<Store {self.url}>"

    # -- sessions ------------------------------------------------------------
    def session(
        self, session_id: str, *, user: str | None = None, ttl: Duration | None = None,
        lease: Duration | None = None, retention: Retention | None = None,
    ) -> Session:
        """Get or create session ``session_id``; ``ttl`` makes it expire after inactivity;
        ``lease`` makes this handle its only writer (fenced; see :mod:`statekeel.features.leases`);
        ``retention`` keeps caps for it that ``gc`` applies (:mod:`statekeel.features.retention`)."""
        if retention is not None and not isinstance(retention, Retention):
            raise InvalidInputError(f"retention= takes statekeel.Retention(...), got {type(retention).__name__}")
        s = open_session(self, session_id, user, ttl, lease)
        if retention is not None:
            s.set_retention(retention)
        return s

    def sessions(
        self,
        *,
        status: SessionStatus | None = None,
        user: str | None = None,
        stale_after: Duration | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> Page[SessionInfo]:
        """A page of sessions in id order; ``stale_after`` keeps active ones silent that long."""
        items, nxt = _sessions.list_sessions(
            self, status=status, user=user, stale_after=maybe_seconds(stale_after, "stale_after"),
            after=after, limit=limit,
        )
        return Page(items, nxt)

    def session_info(self, session_id: str) -> SessionInfo | None:
        """What is stored about a session, without creating or reopening it (None if absent)."""
        return _sessions.get_info(self, session_id)

    def find_session(self, session_id: str) -> Session | None:
        """An existing session without creating it, reopening it or changing its status (None if absent).

        What inspection tools use: ``store.session(id)`` creates a missing session
        and sets a crashed one active again.
        """
        return find_session(self, session_id)

    def delete_session(self, session_id: str) -> bool:
        """Remove everything of a session in one batch (see :meth:`Session.delete`); True if it existed."""
        return _lifecycle.delete_session(self, session_id)

    def mark_stale_crashed(self, after: Duration, *, user: str | None = None) -> list[SessionInfo]:
        """Mark every active session (of ``user``) silent for ``after`` as crashed; return them.

        A session with a live lease or a running ``decide`` block is alive however long
        it is silent, and a ``waiting`` one waits for its user: neither is touched."""
        return _sessions.mark_stale_crashed(self, seconds(after, "after"), user)

    # -- state ---------------------------------------------------------------
    def scope(self, scope: str | Scope) -> StateView:
        """State of ``'app'``, ``'user:<id>'``, ``'session:<id>'`` or ``'temp'``."""
        parsed = parse_scope(scope)
        if parsed.kind == "temp":
            return StateView(self, parsed, self._temp_backend)
        if parsed.kind == "session":
            return self.session(parsed.id).state
        return StateView(self, parsed)

    @property
    def app(self) -> StateView:
        """State shared by the whole application."""
        return self.scope("app")

    def user(self, user_id: str) -> StateView:
        """State of one user, shared by all their sessions."""
        return self.scope(Scope("user", check_name(user_id, "a user id")))

    @property
    def temp(self) -> StateView:
        """Scratch state of this process only; never written to the backend."""
        return self.scope("temp")

    # -- decisions -----------------------------------------------------------
    def decisions(
        self, *, incomplete: bool = False, session: str | None = None, after: str | None = None, limit: int = 50
    ) -> Page[Decision]:
        """A page of decisions in (session, time) order; ``incomplete=True``: only those
        without an outcome — what recovery looks at after a crash."""
        items, nxt = _decisions.list_decisions(
            self, incomplete=incomplete, session=session, after=after, limit=limit
        )
        return Page(items, nxt)

    def resolve_decision(self, decision_id: str, outcome: Any, *, by: str | None = None) -> Decision:
        """Close an incomplete decision with ``outcome``, recording who (``by``) and when."""
        return _decisions.resolve_decision(self, decision_id, outcome, by)

    # -- runs ------------------------------------------------------------------
    def run(self, run_id: str, *, max_attempts: int = 3, lease: Duration | None = None) -> Run:
        """A resumable run: finished steps return their stored result (see :class:`Run`);
        ``lease`` makes this handle the run's only writer (fenced)."""
        return Run(self, run_id, max_attempts=max_attempts, lease=lease)

    def runs(
        self, *, status: RunStatus | None = None, stale_after: Duration | None = None,
        after: str | None = None, limit: int = 50,
    ) -> Page[RunInfo]:
        """A page of runs in id order (without their steps; ``store.run(id).info()`` has them);
        ``stale_after``: running runs silent that long whose process died."""
        items, nxt = _run_admin.list_runs(
            self, status=status, after=after, limit=limit, stale_after=maybe_seconds(stale_after, "stale_after")
        )
        return Page(items, nxt)

    def mark_stale_runs_crashed(self, after: Duration) -> list[RunInfo]:
        """Mark ``crashed`` every running run silent for ``after`` whose process died (no live
        lease, no step executing); running one again resumes it."""
        return _run_admin.mark_stale_runs_crashed(self, seconds(after, "after"))

    def resume_run(self, run_id: str, name: str | None, value: Any) -> RunInfo:
        """Supply ``value`` to the run's ``wait_for(name)`` (None: the step it waits at)."""
        return _run_admin.resume_run(self, run_id, name, value)

    def cancel_run(self, run_id: str, *, reason: str | None = None) -> RunInfo:
        """Cancel a run: no process runs another step of it."""
        return _run_admin.cancel_run(self, run_id, reason)

    # -- events --------------------------------------------------------------
    def events(self, stream: str) -> EventStream:
        """The append-only event stream ``stream`` (see :mod:`statekeel.features.events`)."""
        return EventStream(self, stream)

    # -- long-term memory (statekeel.features.memory) ---------------------------
    def memory(
        self, namespace: tuple[str, ...], *, embedder: Embedder | None = "default", dedup: bool = True,
        similarity: float | None = None,
    ) -> Memory:
        """Long-term memories of ``namespace`` (e.g. ``("user", "u-7")``) with hybrid search; ``embedder``:
        a callable texts -> vectors ("default": WordLlama from ``statekeel[memory]``, None: text only);
        ``similarity``: also dedup texts at least this similar (cosine). See docs/memory.md."""
        return Memory(self, namespace, embedder=embedder, dedup=dedup, similarity=similarity)

    def memory_namespaces(self, prefix: tuple[str, ...] = (), *, limit: int = 100) -> list[tuple[str, ...]]:
        """The memory namespaces holding items, under ``prefix`` (``()``: all), sorted."""
        return _memory_namespaces(self, prefix, limit=limit)

    # -- tenants ---------------------------------------------------------------
    def tenant(self, name: str) -> Store:
        """A handle that sees and writes only tenant ``name``'s data (same connection).

        Backends may enforce it natively (PostgreSQL: row-level security);
        every backend enforces it by key prefix (:mod:`statekeel.backends.tenant`).
        The handle reaches no whole-store operation and no other tenant's data keys
        (docs/security.md, "What a tenant handle can do"); tenants do not nest.
        """
        check_name(name, "a tenant name")
        if isinstance(self.storage, TenantBackend):
            raise UsageError(
                f"this is a tenant handle (tenant {self.storage.tenant!r}) and tenants do not nest; "
                f"open tenant {name!r} on the store itself: store.tenant({name!r})"
            )
        backend: Backend
        native = self._native_tenants
        if native is None:  # a runtime protocol's isinstance costs ~25 µs: once per store
            native = self._native_tenants = isinstance(self.storage, SupportsTenants)
        if native:
            backend = cast(SupportsTenants, self.storage).for_tenant(name)
        else:
            backend = TenantBackend(self.storage, name)
        if sealed := isinstance(self.backend, (SealedBackend, ChainedBackend)):  # above the tenant's view
            backend = self.backend.over(backend, tenant_prefix(name))
        # a bare TenantBackend calls the parent's (already guarded) backend; anything else is new
        allow = self._allow_in_event_loop or not (native or sealed)
        child = Store(backend, self.codec.for_context(tenant_prefix(name)), allow_in_event_loop=allow)
        child.keyring = None if self.keyring is None else TenantKeyring(self.keyring, tenant_prefix(name))
        return child

    # -- data subjects (bind_subject: see Core) ----------------------------------
    def erase(self, subject: str) -> Erasure:
        """Erase every record of data subject ``subject`` (see :mod:`statekeel.features.erasure`)."""
        return erase_subject(self, subject)

    # -- tamper evidence ---------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Check every chain, MAC and head of a tamper-evident store, and its anchor (see
        :mod:`statekeel.features.verify`); failures are listed in the report, not raised."""
        return _verify.verify(self)

    def anchor(self) -> VerifyReport:
        """Verify, then keep every head's version outside the store (``Integrity(anchor=...)``), so a
        later rollback of the whole store is found; refused when verification fails."""
        return _verify.anchor(self)

    # -- housekeeping (purge_expired: see Core) ----------------------------------
    def set_retention(self, retention: Retention | None) -> None:
        """The store's default caps for every session (None: none); ``gc`` applies them."""
        _retention.set_store_retention(self, retention)

    def retention(self) -> Retention:
        """The store's default caps."""
        return _retention.store_retention(self)

    def gc(self) -> GcReport:
        """Apply every session's retention caps, delete expired data (deleted sessions too) and
        fold SQLite's write-ahead log into the file (see :mod:`statekeel.features.retention`)."""
        return _retention.gc(self)

    def close(self) -> None:
        """Close the backend. Idempotent."""
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open(  # noqa: A001 - mirrors the builtin on purpose: statekeel.open(url)
    url: str | None = None,
    *,
    migrate: bool = True,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    compress: str | None = None,
    transforms: list[Transform] | None = None,
    allow_in_event_loop: bool = False,
    encryption: Encryption | None = None,
    secret_guard: GuardMode = "refuse",
    integrity: IntegritySetting = None,
    **backend_options: Any,
) -> Store:
    """Open a store. No URL: ``$STATEKEEL_URL``, else SQLite under ``./.statekeel/``.

    ``migrate=False`` opens without touching the schema (for read-only roles and
    ``statekeel migrate --check``). ``encryption=statekeel.Encryption(...)``
    encrypts every value at rest; ``secret_guard`` is ``"refuse"`` (default),
    ``"redact"`` or ``"off"`` (see :mod:`statekeel.security.guard`). A store once written with
    encryption is refused without its key (:class:`KeyUnavailableError` naming the key id), and
    with it, a value stored there without encryption is refused as planted (:class:`IntegrityError`).
    Inside a running asyncio loop use
    :func:`statekeel.open_async`; ``allow_in_event_loop=True`` (for notebooks)
    lets this store block the loop instead of raising :class:`UsageError`.
    """
    refuse_in_event_loop("statekeel.open", allow_in_event_loop)
    if url is None:
        url = os.environ.get("STATEKEEL_URL") or DEFAULT_URL
    elif url == "":  # never silently fall back to ./.statekeel: the caller meant some URL
        raise ConfigurationError(
            f"the store URL is empty; give one (e.g. {DEFAULT_URL!r}) or leave it out to use "
            "$STATEKEEL_URL or the default"
        )
    _check_keywords(url, backend_options)
    codec_options: dict[str, Any] = {
        "max_record_bytes": max_record_bytes, "compress": compress, "guard": SecretGuard(secret_guard)
    }
    Codec(transforms=transforms, **codec_options)  # codec options are checked before anything is opened or created
    backend = open_backend(url, migrate=migrate, **backend_options)
    if integrity is None:  # the deployment may turn it on for every process: STATEKEEL_INTEGRITY=chain
        integrity = os.environ.get("STATEKEEL_INTEGRITY") or None  # type: ignore[assignment]
    access = _Access(encryption, transforms, mark=migrate, locked_ok=False, integrity=integrity)
    return _store_on(backend, access, codec_options, allow_in_event_loop)


@dataclass(frozen=True)
class _Access:
    """How a store is opened with respect to encryption (see :func:`statekeel.core.encryption.prepare`)."""

    encryption: Encryption | None
    transforms: list[Transform] | None
    mark: bool
    locked_ok: bool
    integrity: IntegritySetting = None
    only_if_marked: bool = False
    """A key given to a check (doctor, verify) of a store not marked encrypted is not used."""


def _store_on(backend: Backend, access: _Access, codec_options: dict[str, Any], allow_in_event_loop: bool) -> Store:
    try:
        keyring, policy = prepare(backend, access.encryption, mark=access.mark, locked_ok=access.locked_ok,
                                  only_if_marked=access.only_if_marked)
        # the short message form names the role in the codec name, stored in clear: an encrypted store
        # seals the role inside the ciphertext instead (core/sealed.py), on any backend (values are bytes)
        short = (backend.short_messages or policy is not None) and not access.transforms
        codec = Codec(transforms=access.transforms, short_messages=short, **codec_options)
        raw = backend
        if policy is not None:  # an encrypted store: values are sealed to their position below the features
            cipher = Cipher(keyring) if keyring is not None else None
            if cipher is not None:
                policy.converting = conversion_in_progress(backend, cipher, codec)
            backend = SealedBackend(backend, cipher, policy)
        chain = _chain(raw, access)
        if chain.key is not None:  # tamper-evident: above the encryption, so the chain covers the plaintext
            backend = ChainedBackend(backend, chain.key)
            backend.anchor = anchor_from(_anchor_setting(access), chain.store_id)
    except BaseException:
        backend.close()  # a bad key configuration must not leak the connection
        raise
    store = Store(backend, codec, allow_in_event_loop=allow_in_event_loop)
    store.keyring = keyring
    store.chain_locked = chain.locked
    return store


def _chain(raw: Backend, access: _Access) -> ChainSetup:
    """The MAC key of a tamper-evident store (its marker read once). Maintenance opens (doctor, verify)
    use the default key source when the store is marked; without that key, the chain is reported
    locked, not refused."""
    setting = access.integrity
    default = access.encryption.master_key if access.encryption is not None else None
    marker = read_marker(raw)
    if setting is None and access.locked_ok and marker is not None:
        try:
            return prepare_chain(raw, "chain", default, marker, mark=False, locked_ok=True)
        except KeyUnavailableError as exc:
            return ChainSetup(None, f"the store {raw.url} is tamper-evident (integrity='chain') and its chains "
                                    f"need the key: {exc}")  # fmt: skip
    return prepare_chain(raw, setting, default, marker, mark=access.mark, locked_ok=access.locked_ok)


def _anchor_setting(access: _Access) -> Any:
    setting = access.integrity
    chosen = setting.anchor if isinstance(setting, Integrity) else None
    return chosen if chosen is not None else os.environ.get("STATEKEEL_ANCHOR")


def open_for_maintenance(
    url: str, *, encryption: Encryption | None = None, migrate: bool = False, mark: bool = True
) -> Store:
    """A store for ``statekeel doctor``, ``migrate`` and ``keys encrypt``.

    Unlike :func:`open`, an encrypted store without its key opens *locked* rather than
    refused: records, logs and checksums can be walked, values are neither decoded nor
    written. ``mark=False`` leaves a store without the encryption marker unmarked
    (``keys encrypt`` marks it itself, after recording that a conversion is under way).
    """
    backend = open_backend(url, migrate=migrate)
    converting = migrate and not mark  # `statekeel keys encrypt`: seal with the key though nothing is marked yet
    access = _Access(encryption, None, mark=mark and migrate, locked_ok=True, only_if_marked=not converting)
    return _store_on(backend, access, {"guard": SecretGuard()}, False)


_OPEN_KEYWORDS = (
    "migrate", "max_record_bytes", "compress", "transforms", "allow_in_event_loop", "encryption", "secret_guard",
    "integrity",
)


def _check_keywords(url: str, given: dict[str, Any]) -> None:
    """A misspelt keyword must fail, naming the valid ones, not reach the backend as a TypeError."""
    if not given:
        return
    accepted = _backend_options(url)
    unknown = sorted(set(given) - set(accepted)) if accepted is not None else []
    if unknown:
        backend = ", ".join(a for a in accepted or () if a != "migrate") or "none"
        raise ConfigurationError(
            f"statekeel.open() got unknown keyword {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(_OPEN_KEYWORDS)}, and this backend also takes: {backend}"
        )

