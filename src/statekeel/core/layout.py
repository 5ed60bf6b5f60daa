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
    session/S/cplabel/<label>      {"id"}: the one checkpoint carrying a label
    session/S/decisions            the append-only decision log
    session/S/decision/<id>        a decision not yet closed
    session/S/notes/<author>       one stamped note per author
    session/S/idem/<key>           an idempotency key already applied (expires after its window)
    session/S/summary/<~upto>      a summary of history seqs ``from..upto`` (statekeel.features.summaries);
                                   ``~upto`` is mirrored so a forward scan walks summaries newest first
    session/S/lease, run/R/lease   {"h": holder, "n": token, "u": until}: the fenced single-writer lease
    session/S/busy/<id>            {"until"}: a decide block is running (renewed by its heartbeat)
    idx/sessions/S                 {}: what session listings scan
    idx/decisions/S/<id>           pointer to an open decision
    app/_/state/<key>, user/U/state/<key>    app and user state
    run/R/meta, run/R/step/<name>, run/R/input/<name>;   idx/runs/R
    run/R/busy                     {"until"}: a step is executing (its heartbeat renews it)
    events/E/log, events/E/snap/<projection>/v<N>/<seq>, events/E/consumer/<name>
    keys/<partition>, subjects/<digest>/<partition>     the keystore (encryption)
    erasures/all/<id>              what an erasure left behind
    langgraph/T/head/<ns>, langgraph/T/cp/<ns>/<~id>, langgraph/T/w/<ns>/<~id>/<task>/<idx>,
    langgraph/T/v/<ns>/<channel>/<version>     a LangGraph thread (statekeel.integrations.langgraph)
    idx/langgraph/T, idx/langgraph-runs/<run>/T   the LangGraph thread and run listings
    lgstore/<namespace path>/<key>               LangGraph BaseStore items
    lgsindex/n<label>/l<item prefix>/<~time>/<rest of key>, lgsindex/r/<~time>/<key>   their index
                                   by write time, one entry per enclosing namespace
                                   (statekeel.integrations.langgraph._index)
    statekeel/lgstore              the LangGraph store's format (index version, build progress)
    memory/n<label>/…/=<key>, memory/n<label>/…/#<digest>   long-term memory items and their
                                   content-hash pointers (statekeel.features.memory)
    statekeel/retention            the store's default retention caps (statekeel gc applies them)
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
    "ERASURES_PREFIX",
    "INTEGRITY_MARKER",
    "SUBJECT_SECRET_PARTITION",
    "DECISION_INDEX_PREFIX",
    "RETENTION_KEY",
    "RUN_INDEX_PREFIX",
    "SESSION_INDEX_PREFIX",
    "SESSIONS_PREFIX",
    "session_id_of_meta",
    "chain_bucket_index",
    "chain_bucket_key",
    "chain_head_key",
    "checkpoint_body_key",
    "checkpoint_header_key",
    "checkpoint_label_key",
    "checkpoint_headers_prefix",
    "checkpoints_key",
    "consumer_key",
    "consumers_prefix",
    "decision_index_key",
    "decision_index_prefix",
    "decision_key",
    "decision_log",
    "decisions_prefix",
    "erasure_key",
    "event_log",
    "events_prefix",
    "busy_prefix",
    "history_log",
    "lease_key",
    "idempotency_key",
    "is_chain_head",
    "keystore_key",
    "langgraph_blob_key",
    "langgraph_blob_prefix",
    "langgraph_checkpoint_key",
    "langgraph_checkpoints_prefix",
    "langgraph_head_key",
    "langgraph_run_index_key",
    "langgraph_run_index_prefix",
    "langgraph_store_key",
    "langgraph_store_index_prefix",
    "LANGGRAPH_STORE_FORMAT",
    "langgraph_store_prefix",
    "langgraph_thread_index_key",
    "langgraph_thread_prefix",
    "langgraph_writes_prefix",
    "MEMORY_PREFIX",
    "memory_hash_key",
    "memory_item_key",
    "memory_prefix",
    "LANGGRAPH_THREAD_INDEX_PREFIX",
    "note_prefix",
    "partition",
    "run_busy_key",
    "run_index_key",
    "run_input_key",
    "run_inputs_prefix",
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
    "summaries_prefix",
    "summary_key",
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


def checkpoint_label_key(session_id: str, label: str) -> str:
    """Which checkpoint carries ``label`` (labels are unique per session)."""
    return keys.join("session", session_id, "cplabel", label)


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


SUMMARY_SEQ_DIGITS: Final = 19
"""Digits of a mirrored summary seq: ``10**19 - 1 - upto`` zero-padded, so keys sort newest first."""


def summaries_prefix(session_id: str) -> str:
    """Every summary of the session's history (a forward scan meets the newest first)."""
    return keys.join("session", session_id, "summary") + "/"


def summary_key(session_id: str, upto: int) -> str:
    """The summary whose range ends at history seq ``upto`` (one per end seq)."""
    mirrored = 10**SUMMARY_SEQ_DIGITS - 1 - int(upto)
    return keys.join("session", session_id, "summary", f"{mirrored:0{SUMMARY_SEQ_DIGITS}d}")


def lease_key(kind: str, ident: str) -> str:
    """The lease record of session or run ``ident`` (``kind`` is ``session`` or ``run``)."""
    return keys.join(kind, ident, "lease")


def busy_prefix(session_id: str) -> str:
    """Markers of the decide blocks running in a session right now."""
    return keys.join("session", session_id, "busy") + "/"


def idempotency_key(session_id: str, key: str) -> str:
    """The record saying idempotency key ``key`` was applied in the session."""
    return keys.join("session", session_id, "idem", key)


# -- runs -----------------------------------------------------------------------------
RUN_INDEX_PREFIX: Final = keys.join("idx", "runs") + "/"


def run_meta_key(run_id: str) -> str:
    return keys.join("run", run_id, "meta")


def run_input_key(run_id: str, name: str) -> str:
    return keys.join("run", run_id, "input", name)


def run_inputs_prefix(run_id: str) -> str:
    """Where ``resume_run`` leaves the inputs of a run's waits (read by the inspector)."""
    return keys.join("run", run_id, "input") + "/"


def run_steps_prefix(run_id: str) -> str:
    return keys.join("run", run_id, "step") + "/"


def run_busy_key(run_id: str) -> str:
    """``{"until"}``: a step of the run is executing (renewed by its heartbeat)."""
    return keys.join("run", run_id, "busy")


def run_index_key(run_id: str) -> str:
    return keys.join("idx", "runs", run_id)


# -- events ---------------------------------------------------------------------------
def events_prefix() -> str:
    return "events/"


def event_log(stream: str) -> str:
    return keys.join("events", stream, "log")


def snapshot_prefix(stream: str, projection: str, version: int) -> str:
    return keys.join("events", stream, "snap", projection, f"v{int(version)}") + "/"


def consumers_prefix(stream: str) -> str:
    """Every consumer position of a stream (listed by the inspector)."""
    return keys.join("events", stream, "consumer") + "/"


def consumer_key(stream: str, name: str) -> str:
    return keys.join("events", stream, "consumer", name)


# -- LangGraph (statekeel.integrations.langgraph) ------------------------------------------
# One partition per thread (``langgraph/<thread>``), so a checkpoint, its channel values and the
# head it moves are one atomic batch even on Redis Cluster. A namespace component is ``n`` + the
# checkpoint_ns (the root namespace is ``""``); ``inverted_id`` is the checkpoint id with its digits
# mirrored, so a forward key scan walks checkpoints newest first.
LANGGRAPH_THREAD_INDEX_PREFIX: Final = keys.join("idx", "langgraph") + "/"


def langgraph_thread_prefix(thread_id: str) -> str:
    return keys.join("langgraph", thread_id) + "/"


def langgraph_head_key(thread_id: str, ns: str) -> str:
    """The id of the newest checkpoint of a thread's namespace (compare-and-set: fencing)."""
    return keys.join("langgraph", thread_id, "head", "n" + ns)


def langgraph_checkpoints_prefix(thread_id: str, ns: str | None = None) -> str:
    """Checkpoint records of one namespace (or, with ``ns=None``, of every namespace)."""
    if ns is None:
        return keys.join("langgraph", thread_id, "cp") + "/"
    return keys.join("langgraph", thread_id, "cp", "n" + ns) + "/"


def langgraph_checkpoint_key(thread_id: str, ns: str, inverted_id: str) -> str:
    return keys.join("langgraph", thread_id, "cp", "n" + ns, inverted_id)


def langgraph_writes_prefix(thread_id: str, ns: str, inverted_id: str | None = None) -> str:
    """Pending writes of one checkpoint (or, without ``inverted_id``, of a whole namespace)."""
    if inverted_id is None:
        return keys.join("langgraph", thread_id, "w", "n" + ns) + "/"
    return keys.join("langgraph", thread_id, "w", "n" + ns, inverted_id) + "/"


def langgraph_blob_prefix(thread_id: str, ns: str, channel: str) -> str:
    return keys.join("langgraph", thread_id, "v", "n" + ns, channel) + "/"


def langgraph_blob_key(thread_id: str, ns: str, channel: str, version: str) -> str:
    """One stored channel value (full, or the items appended since a base version)."""
    return keys.join("langgraph", thread_id, "v", "n" + ns, channel, version)


def langgraph_thread_index_key(thread_id: str) -> str:
    return keys.join("idx", "langgraph", thread_id)


def langgraph_run_index_prefix(run_id: str) -> str:
    return keys.join("idx", "langgraph-runs", run_id) + "/"


def langgraph_run_index_key(run_id: str, thread_id: str) -> str:
    return keys.join("idx", "langgraph-runs", run_id, thread_id)


def langgraph_store_prefix(namespace: tuple[str, ...]) -> str:
    """Items of a LangGraph store namespace (and, as a prefix, of the namespaces below it)."""
    return keys.join("lgstore", *("n" + label for label in namespace)) + "/"


def langgraph_store_key(namespace: tuple[str, ...], key: str) -> str:
    return langgraph_store_prefix(namespace) + "=" + keys.escape(key)


def langgraph_store_index_prefix(namespace: tuple[str, ...]) -> str:
    """The write-time index of the items under ``namespace`` (and below), its entries
    ``<~time>/<rest of the item key>`` in newest-first key order. The namespaces under one first
    label share a partition (``lgsindex/n<label>``), the root has its own (``lgsindex/r``): a put
    writes three partitions, whatever the namespace's depth."""
    if not namespace:
        return keys.join("lgsindex", "r") + "/"
    return keys.join("lgsindex", "n" + namespace[0], "l" + langgraph_store_prefix(namespace)) + "/"


LANGGRAPH_STORE_FORMAT: Final = keys.join("statekeel", "lgstore")
"""The LangGraph store's format record: which index version its items carry (and, while it is being
built, how far the build got)."""


# -- long-term memory (statekeel.features.memory) --------------------------------------------
# A namespace component is ``n`` + its label; an item is ``=`` + its key, a content-hash pointer
# ``#`` + the digest, so one prefix scan of a namespace reaches its items and those below it.
MEMORY_PREFIX: Final = "memory/"


def memory_prefix(namespace: tuple[str, ...]) -> str:
    """Items of a memory namespace (and, as a prefix, of the namespaces below it)."""
    return keys.join("memory", *("n" + label for label in namespace)) + "/"


def memory_item_key(namespace: tuple[str, ...], key: str) -> str:
    return memory_prefix(namespace) + "=" + keys.escape(key)


def memory_hash_key(namespace: tuple[str, ...], digest: str) -> str:
    """Which key of the namespace holds the text with content hash ``digest`` (dedup on write)."""
    return memory_prefix(namespace) + "#" + digest


# -- keystore and erasure ----------------------------------------------------------------
def keystore_key(partition_key: str) -> str:
    """The wrapped data keys of a partition."""
    return keys.join("keys", partition_key)


def subject_prefix(subject_digest: str) -> str:
    return keys.join("subjects", subject_digest) + "/"


def subject_key(subject_digest: str, partition_key: str) -> str:
    return keys.join("subjects", subject_digest, partition_key)


ERASURES_PREFIX: Final = keys.join("erasures", "all") + "/"


def erasure_key(erasure_id: str) -> str:
    return keys.join("erasures", "all", erasure_id)


# -- encryption marker -------------------------------------------------------------------
SUBJECT_SECRET_PARTITION: Final = keys.join("statekeel", "subjects")
"""The keystore entry whose key (version 1) keys the subject digests: wrapped by the master key
like a data key, so a master key rotation keeps every digest — and erasure — working."""
RETENTION_KEY: Final = keys.join("statekeel", "retention")
"""The store's default retention caps (``store.set_retention``), applied by ``statekeel gc``."""
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


def chain_bucket_key(partition_key: str, index: int) -> str:
    """One bucket of a partition's chain head, when its records are listed in buckets
    (``session/s1``, 5 → ``session/s1/~head~5``; see :class:`statekeel.core.chain.Head`)."""
    return f"{partition_key}/{CHAIN_HEAD}~{index:x}"


def chain_bucket_index(key: str) -> int | None:
    """The bucket a chain head record is (None: a partition's head itself, or a name that is no bucket)."""
    last = key[key.rfind("/") + 1 :]
    digits = last[len(CHAIN_HEAD) + 1 :]
    if not last.startswith(CHAIN_HEAD + "~") or not digits or digits.strip("0123456789abcdef"):
        return None
    return int(digits, 16)


def is_chain_head(key: str) -> bool:
    """Whether ``key`` is a chain head record: a partition's head or one of its buckets."""
    last = key[key.rfind("/") + 1 :]
    return last == CHAIN_HEAD or last.startswith(CHAIN_HEAD + "~") and last != CHAIN_HEAD + "~"


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
