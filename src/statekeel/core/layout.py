"""Where every feature keeps its records: the one place backend keys are spelled.

A key is a ``/``-separated path of escaped components (:mod:`statekeel.protocol.keys`);
its first two components are its *partition*, the unit an atomic batch stays
inside on backends that shard (Redis Cluster). Everything one session owns
shares the partition ``session/<id>``; the listings that span sessions or runs
live in index partitions (``idx/...``)::

    session/S/meta                 {"user", "status", "ttl"}; updated_at is the heartbeat
    session/S/history              the append-only log of messages
    session/S/state/<key>          session-scoped state
    session/S/view                 history ranges hidden by a checkpoint restore
    session/S/checkpoints          checkpoint counter and chain
    session/S/cp/<id>              checkpoint header;   session/S/cpdata/<id> its body
    session/S/decisions            the append-only decision log
    session/S/decision/<id>        a decision not yet closed
    session/S/notes/<author>       one stamped note per author
    idx/sessions/S                 {}: what session listings scan
    idx/decisions/S/<id>           pointer to an open decision
    app/_/state/<key>, user/U/state/<key>    app and user state
    run/R/meta, run/R/step/<name>, run/R/input/<name>;   idx/runs/R
    events/E/log, events/E/snap/<projection>/v<N>/<seq>, events/E/consumer/<name>
    keys/<partition>, subjects/<digest>/<partition>     the keystore (encryption)
    erasures/all/<id>              what an erasure left behind
    statekeel/encryption           the marker of an encrypted store (plain JSON: key id, no secret)
    statekeel/encrypting           present (encrypted) while `statekeel keys encrypt` converts the store

Records stored in clear even in an encrypted store (:func:`stored_in_clear`): the
keystore, erasure records and the encryption marker. Nothing reads them as values.
"""

from __future__ import annotations

from typing import Any, Final

from ..protocol import keys
from .validate import check_name

__all__ = [
    "CHECKPOINTS_LOG",
    "CHAIN_HEAD",
    "ENCRYPTION_CONVERSION",
    "ENCRYPTION_MARKER",
    "INTEGRITY_MARKER",
    "SUBJECT_SECRET_PARTITION",
    "DECISION_INDEX_PREFIX",
    "RUN_INDEX_PREFIX",
    "SESSION_INDEX_PREFIX",
    "SESSIONS_PREFIX",
    "session_id_of_meta",
    "chain_head_key",
    "checkpoint_body_key",
    "checkpoint_header_key",
    "checkpoint_headers_prefix",
    "checkpoints_key",
    "consumer_key",
    "decision_index_key",
    "decision_index_prefix",
    "decision_key",
    "decision_log",
    "decisions_prefix",
    "erasure_key",
    "event_log",
    "events_prefix",
    "history_log",
    "is_chain_head",
    "keystore_key",
    "note_prefix",
    "partition",
    "run_index_key",
    "run_input_key",
    "run_meta_key",
    "run_steps_prefix",
    "scope_state_prefix",
    "session_index_key",
    "session_meta_key",
    "session_prefix",
    "session_view_key",
    "snapshot_prefix",
    "state_key",
    "stored_in_clear",
    "subject_key",
    "subject_prefix",
]

CHECKPOINTS_LOG: Final = "checkpoints"


def partition(kind: str, ident: str) -> str:
    """``session/<id>``, ``user/<id>``, ``run/<id>`` …: the unit one batch stays inside."""
    return keys.join(kind, ident)


def scope_state_prefix(kind: str, ident: str) -> str:
    """Prefix of the state records of scope ``kind:ident`` (``app``'s ident is ``_``)."""
    return keys.join(kind, ident, "state") + "/"


def state_key(kind: str, ident: str, key: Any) -> str:
    """The record of state ``key`` in scope ``kind:ident``; keys are names (:mod:`.validate`)."""
    return scope_state_prefix(kind, ident) + keys.escape(check_name(key, "a state key"))


# -- sessions -----------------------------------------------------------------------
SESSION_INDEX_PREFIX: Final = keys.join("idx", "sessions") + "/"
SESSIONS_PREFIX: Final = keys.join("session") + "/"
"""Every session's records start with this (``session/<id>/…``)."""


def session_id_of_meta(key: str) -> str | None:
    """The session id if ``key`` is a session's metadata record (``session/<id>/meta``), else None."""
    parts = keys.split(key)
    return parts[1] if len(parts) == 3 and parts[0] == "session" and parts[2] == "meta" else None


def session_prefix(session_id: str) -> str:
    """Everything the session owns starts with this."""
    return keys.join("session", session_id) + "/"


def session_meta_key(session_id: str) -> str:
    return keys.join("session", session_id, "meta")


def session_index_key(session_id: str) -> str:
    return keys.join("idx", "sessions", session_id)


def history_log(session_id: str) -> str:
    return keys.join("session", session_id, "history")


def session_view_key(session_id: str) -> str:
    """The history ranges a checkpoint restore hid."""
    return keys.join("session", session_id, "view")


# -- checkpoints ----------------------------------------------------------------------
def checkpoints_key(session_id: str) -> str:
    return keys.join("session", session_id, CHECKPOINTS_LOG)


def checkpoint_headers_prefix(session_id: str) -> str:
    return keys.join("session", session_id, "cp") + "/"


def checkpoint_header_key(session_id: str, cp_id: int) -> str:
    return keys.join("session", session_id, "cp", f"{cp_id:010d}")


def checkpoint_body_key(session_id: str, cp_id: int) -> str:
    return keys.join("session", session_id, "cpdata", f"{cp_id:010d}")


# -- decisions and notes ----------------------------------------------------------------
DECISION_INDEX_PREFIX: Final = keys.join("idx", "decisions") + "/"


def decision_index_prefix(session_id: str) -> str:
    return keys.join("idx", "decisions", session_id) + "/"


def decision_index_key(session_id: str, suffix: str) -> str:
    return keys.join("idx", "decisions", session_id, suffix)


def decision_log(session_id: str) -> str:
    return keys.join("session", session_id, "decisions")


def decision_key(session_id: str, suffix: str) -> str:
    return keys.join("session", session_id, "decision", suffix)


def decisions_prefix(session_id: str) -> str:
    return keys.join("session", session_id, "decision") + "/"


def note_prefix(session_id: str) -> str:
    return keys.join("session", session_id, "notes") + "/"


# -- runs -----------------------------------------------------------------------------
RUN_INDEX_PREFIX: Final = keys.join("idx", "runs") + "/"


def run_meta_key(run_id: str) -> str:
    return keys.join("run", run_id, "meta")


def run_input_key(run_id: str, name: str) -> str:
    return keys.join("run", run_id, "input", name)


def run_steps_prefix(run_id: str) -> str:
    return keys.join("run", run_id, "step") + "/"


def run_index_key(run_id: str) -> str:
    return keys.join("idx", "runs", run_id)


# -- events ---------------------------------------------------------------------------
def events_prefix() -> str:
    return "events/"


def event_log(stream: str) -> str:
    return keys.join("events", stream, "log")


def snapshot_prefix(stream: str, projection: str, version: int) -> str:
    return keys.join("events", stream, "snap", projection, f"v{int(version)}") + "/"


def consumer_key(stream: str, name: str) -> str:
    return keys.join("events", stream, "consumer", name)


# -- keystore and erasure ----------------------------------------------------------------
def keystore_key(partition_key: str) -> str:
    """The wrapped data keys of a partition."""
    return keys.join("keys", partition_key)


def subject_prefix(subject_digest: str) -> str:
    return keys.join("subjects", subject_digest) + "/"


def subject_key(subject_digest: str, partition_key: str) -> str:
    return keys.join("subjects", subject_digest, partition_key)


def erasure_key(erasure_id: str) -> str:
    return keys.join("erasures", "all", erasure_id)


# -- encryption marker -------------------------------------------------------------------
SUBJECT_SECRET_PARTITION: Final = keys.join("statekeel", "subjects")
"""The keystore entry whose key (version 1) keys the subject digests: wrapped by the master key
like a data key, so a master key rotation keeps every digest — and erasure — working."""
ENCRYPTION_MARKER: Final = keys.join("statekeel", "encryption")
"""Present in a store written with encryption: opening it without the key is refused."""
ENCRYPTION_CONVERSION: Final = keys.join("statekeel", "encrypting")
"""Present, encrypted, while ``statekeel keys encrypt`` converts a plaintext store: until it is
gone, records still in plaintext are read (they are being converted), not refused."""


INTEGRITY_MARKER: Final = keys.join("statekeel", "integrity")
"""Present in a store written with ``integrity="chain"``: opening it without the MAC key is refused."""

CHAIN_HEAD: Final = "~head"
"""The last component of a partition's chain head record (``~`` never ends an escaped id here: the
head sits beside the partition's own keys, which features name with fixed words)."""


def chain_head_key(partition_key: str) -> str:
    """The chain head record of a partition (``session/s1`` → ``session/s1/~head``)."""
    return partition_key + "/" + CHAIN_HEAD


def is_chain_head(key: str) -> bool:
    return key.endswith("/" + CHAIN_HEAD)


def stored_in_clear(key: str) -> bool:
    """Whether ``key`` (a backend key, tenant prefix included) is plain by design in an
    encrypted store: the keystore (``keys/``, ``subjects/`` at the store's root), the
    encryption and integrity markers, chain heads (key names, versions and MACs: nothing
    the keys do not show; plain, so erasing a partition's key never blocks its head),
    and erasure records (a tenant's too). Any other record stored
    without encryption in an encrypted store was planted or tampered with."""
    if key in (ENCRYPTION_MARKER, INTEGRITY_MARKER) or key.startswith(("keys/", "subjects/")) or is_chain_head(key):
        return True
    first = key.partition("/")[0]
    local = key[first.rindex("~") + 1 :] if "~" in first else key
    return local.startswith("erasures/")
