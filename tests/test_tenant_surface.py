"""Issue 11.4: a tenant handle exposes only tenant operations, on every backend.

``test_every_public_attribute_of_a_tenant_handle_is_classified`` walks, by
reflection, every public attribute reachable from ``store.tenant(...)`` and
from its asyncio twin — the store, its backend view, codec, guard, keyring,
state views, sessions, notes, batches, decisions, runs, event streams,
consumers — and fails on any class or attribute not classified below. A
whole-store method added later therefore fails here until someone decides
whether a tenant may call it. On the way it checks that nothing reachable is
a raw backend, a keyring of the whole store, a connection, pool, client or
file: only statekeel objects and plain values.

The other tests prove isolation: tenant A's handle cannot read, list, write,
erase or purge tenant B's data by any of those routes (docs/security.md,
"What a tenant handle can do").
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import inspect
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statekeel
from statekeel import Encryption, Store
from statekeel.aio import AsyncStore
from statekeel.backends.tenant import TenantBackend
from statekeel.core.sealed import SealedBackend
from statekeel.core.keyring import Keyring
from statekeel.core.tenant_keyring import TenantKeyring
from statekeel.errors import ConfigurationError, ExpiredError, UsageError
from statekeel.features.rotation import encrypt_store, reencrypt, rotate_master
from statekeel.portability import copy_store, export_store, import_store, verify_stores
from statekeel.protocol import Backend, Delete, Expire, Put
from statekeel.protocol.capabilities import capabilities_of

KEY = base64.b64encode(b"S" * 32).decode()

# -- the classification -------------------------------------------------------------------
TENANT = "acts on this tenant's data only (the isolation tests below prove it)"
VALUE = "a plain value"
OBJECT = "a statekeel object, walked in turn"
NOTHING = "changes nothing outside the tenant: purges nothing, closes nothing, migrates nothing"


@dataclasses.dataclass(frozen=True)
class Opens:
    """A method returning statekeel objects, walked in turn (``make`` calls it)."""

    make: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Refuses:
    """A whole-store operation: ``call`` must raise UsageError saying it is a tenant handle."""

    call: Callable[[Any], Any]


Kind = str | Opens | Refuses


def _state_view() -> dict[str, Kind]:
    names = ("delete", "get", "item", "items", "keys", "put", "put_op", "require", "setdefault", "to_dict", "update")
    return {**dict.fromkeys(names, TENANT), "scope": OBJECT}


_STORE_FEATURES: dict[str, Kind] = {
    **dict.fromkeys(
        ("bind_subject", "cancel_run", "decisions", "erase", "mark_stale_crashed", "resolve_decision",
         "resume_run", "runs", "session_info", "sessions",
         # issue 12: through the tenant view, so on this tenant's sessions, runs and retention
         # record only; gc's purge is the view's (purges nothing) — test_lifecycle proves it
         "delete_session", "gc", "mark_stale_runs_crashed", "retention", "set_retention"),
        TENANT,
    ),
    "app": OBJECT, "temp": OBJECT, "stats": VALUE, "url": VALUE, "purge_expired": NOTHING,
    "tenant": Refuses(lambda t: t.tenant("nested")),
}  # fmt: skip

_SESSION: dict[str, Kind] = {
    **dict.fromkeys(
        ("append", "checkpoint", "checkpoints", "complete", "diff", "fork", "heartbeat", "hidden_ranges",
         "history", "info", "is_stale", "mark_crashed", "messages", "prune_checkpoints", "restore", "set_status",
         "apply_retention", "clear", "delete", "pop", "release", "set_retention", "trim", "wait",
         "context", "summarize"),  # issue 16: the working set reads and writes this session only
        TENANT,
    ),
    "id": VALUE, "resumed": OBJECT, "ttl": VALUE, "user": VALUE, "notes": OBJECT, "state": OBJECT,
    "lease_token": VALUE,
    "batch": Opens(lambda s: s.batch()), "decide": Opens(lambda s: s.decide("walked")),
}  # fmt: skip

_RUN: dict[str, Kind] = {
    **dict.fromkeys(("complete", "fail", "info", "release", "step", "stepfn", "wait_for"), TENANT),
    **dict.fromkeys(("executed", "id", "lease_token", "reused", "suspended"), VALUE),
}

_STREAM: dict[str, Kind] = {
    **dict.fromkeys(("append", "append_many", "get", "iter", "project", "read", "seq_at"), TENANT),
    "last_seq": VALUE, "name": VALUE,
    "consumer": Opens(lambda e: e.consumer("walker")),
    "projection": Opens(lambda e: e.projection(lambda n, _: (n or 0) + 1)),
}  # fmt: skip

_CONSUMER: dict[str, Kind] = {"ack": TENANT, "poll": TENANT, "seek": TENANT, "lag": VALUE, "name": VALUE,
                              "position": VALUE, "stream": OBJECT}  # fmt: skip

SURFACE: dict[str, dict[str, Kind]] = {
    "Store": {
        **_STORE_FEATURES,
        "backend": OBJECT, "codec": OBJECT, "keyring": OBJECT, "storage": OBJECT, "sealing": OBJECT,
        "chain_locked": VALUE, "close": NOTHING, "verify": TENANT,
        "anchor": Refuses(lambda t: t.anchor()),
        "events": Opens(lambda t: t.events("e")),
        "find_session": Opens(lambda t: t.find_session("s")),
        "run": Opens(lambda t: t.run("r")),
        "scope": Opens(lambda t: [t.scope("app"), t.scope("user:u"), t.scope("session:s"), t.scope("temp")]),
        "session": Opens(lambda t: t.session("s")),
        "user": Opens(lambda t: t.user("u")),
        "memory": Opens(lambda t: t.memory(("walk",))), "memory_namespaces": TENANT,
    },
    "TenantBackend": {
        **dict.fromkeys(("apply", "get", "get_many", "get_many_and_values", "log_info", "log_info_many", "read",
                         "read_values", "scan", "scan_logs"), TENANT),
        **dict.fromkeys(("batch_scope", "prefix", "short_messages", "tenant", "url"), VALUE),
        "close": NOTHING, "purge_expired": NOTHING,
        "migrate": NOTHING,  # reports; refuses to migrate (tests/test_architecture.py)
    },
    "SealedBackend": {  # the sealing of an encrypted store, above the tenant's own view
        **dict.fromkeys(("apply", "get", "get_many", "get_many_and_values", "log_info", "log_info_many", "read",
                         "read_values", "scan", "scan_logs"), TENANT),
        **dict.fromkeys(("open_entry", "open_record", "open_value"), TENANT),
        # the asyncio twin's half (core/sealed_aio.py): this view's own positions and sealing
        **dict.fromkeys(("forget_batch", "learn", "needed", "opened", "retries", "saw", "saw_log", "seal_batch"),
                        TENANT),
        # opening a reload in bulk (core/sealed_runs.py): this view's values, at seqs it knows
        **dict.fromkeys(("as_stored", "first_known", "opened_records", "opened_run", "opened_values"), TENANT),
        **dict.fromkeys(("batch_scope", "short_messages", "url"), VALUE),
        "storage": OBJECT, "policy": OBJECT, "locked": VALUE, "is_stale": TENANT, "over": NOTHING,  # over() seals under this tenant's prefix only
        "close": NOTHING, "purge_expired": NOTHING, "migrate": NOTHING,
    },
    "Codec": {
        **dict.fromkeys(("compressing", "decode", "decode_many", "encode", "encode_bytes", "for_context"), TENANT),
        **dict.fromkeys(("compress_min_bytes", "context_prefix", "max_record_bytes", "short_messages"), VALUE),
        "guard": OBJECT,
    },
    "EncryptedStorePolicy": {"check_decode": TENANT, "check_encode": TENANT, "converting": VALUE, "locked": VALUE},
    "SecretGuard": {"check": TENANT, "suspicious": TENANT, "mode": VALUE},
    "TenantKeyring": {
        **dict.fromkeys(("bind", "current", "destroy", "fetch", "get", "subject_digest", "subject_partitions"), TENANT),
        "forget_cache": NOTHING, "prefix": VALUE,
        "master": Refuses(lambda k: k.master), "keystore": Refuses(lambda k: k.keystore),
        "partitions": Refuses(lambda k: k.partitions()),
        "rewrap": Refuses(lambda k: k.rewrap(k.prefix + "app/_")),
        "new_version": Refuses(lambda k: k.new_version(k.prefix + "app/_")),
        "begin_reencrypt": Refuses(lambda k: k.begin_reencrypt(k.prefix + "app/_")),
        "end_reencrypt": Refuses(lambda k: k.end_reencrypt(k.prefix + "app/_")),
    },
    "StateView": _state_view(),
    "SessionState": _state_view(),
    "Scope": {"id": VALUE, "kind": VALUE, "prefix": VALUE},
    "Session": _SESSION,
    "SessionNotes": dict.fromkeys(("all", "delete", "read", "write"), TENANT),
    "SessionBatch": {"append": TENANT, "delete": TENANT, "put": TENANT, "first_seq": VALUE},
    "DecisionContext": {"outcome": TENANT, "decision": OBJECT, "id": VALUE, "result": OBJECT},
    "Run": {**_RUN, "max_attempts": VALUE},
    "EventStream": _STREAM,
    "Consumer": _CONSUMER,
    "Projection": dict.fromkeys(("replayed", "seq", "snapshot_seq", "state"), VALUE),
    "Memory": {**dict.fromkeys(("delete", "forget", "get", "items", "policy", "put", "put_many", "reindex", "search",
                                "set_policy"), TENANT),
               "embedder": VALUE, "namespace": VALUE},  # fmt: skip
    # -- the asyncio twin -------------------------------------------------------------------
    "AsyncStore": {
        **_STORE_FEATURES,
        "call": TENANT, "context": TENANT, "sync": OBJECT, "aclose": NOTHING, "storage": OBJECT, "sealing": OBJECT,
        "verify": TENANT, "anchor": Refuses(lambda t: t.anchor()),
        "events": Opens(lambda t: t.events("e")),
        "find_session": Opens(lambda t: t.find_session("s")),
        "run": Opens(lambda t: t.run("r")),
        "scope": Opens(lambda t: [t.scope("app"), t.scope("user:u"), t.scope("temp")]),
        "session": Opens(lambda t: t.session("s")),
        "user": Opens(lambda t: t.user("u")),
        "memory": Opens(lambda t: t.memory(("walk",))), "memory_namespaces": TENANT,
    },
    "AsyncMemory": {**dict.fromkeys(("delete", "forget", "get", "items", "policy", "put", "put_many", "reindex",
                                     "search", "set_policy"), TENANT),
                    "embedder": VALUE, "namespace": VALUE, "sync": OBJECT},  # fmt: skip
    "AsyncSession": {**_SESSION, "count": TENANT, "sync": OBJECT},
    "AsyncStateView": {**_state_view(), "contains": TENANT},
    "AsyncSessionBatch": {"append": TENANT, "delete": TENANT, "put": TENANT, "first_seq": VALUE},
    "AsyncDecisionContext": {"outcome": TENANT, "decision": OBJECT, "id": VALUE, "result": OBJECT},
    "AsyncSessionNotes": dict.fromkeys(("all", "delete", "read", "write"), TENANT),
    "AsyncRun": _RUN,
    "AsyncEventStream": {**_STREAM, "count": TENANT, "last_seq": TENANT, "sync": OBJECT},
    "AsyncConsumer": {**_CONSUMER, "lag": TENANT, "position": TENANT},
}
"""Every public attribute reachable from a tenant handle, by class, and what it may do."""

for _name in ("AsyncSession", "AsyncStateView"):
    SURFACE[_name].pop("put_op", None)  # the async twins have no op builders


# -- the walk -----------------------------------------------------------------------------
_LEAVES = (str, int, float, bool, bytes, type(None), Counter, dt.datetime, dt.timedelta)


def _is_statekeel(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "statekeel"


class Walk:
    """Visits every statekeel object reachable from the roots; collects what is wrong."""

    def __init__(self, whole: Store) -> None:
        self.whole = whole
        self.problems: list[str] = []
        self.seen: set[int] = set()
        self.alive: list[Any] = []  # keeps visited objects, so no id in ``seen`` is reused
        self.classes: set[str] = set()
        self.refused: list[str] = []

    async def visit(self, obj: Any, path: str) -> None:
        if isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj):
                await self.visit(item, f"{path}[{i}]")
            return
        if not self._check_reachable(obj, path) or id(obj) in self.seen:
            return
        self.seen.add(id(obj))
        self.alive.append(obj)
        cls = type(obj).__name__
        table = SURFACE.get(cls)
        if table is None:
            self.problems.append(f"{path}: class {cls} is reachable from a tenant handle; classify it in SURFACE")
            return
        self.classes.add(cls)
        public = {n for n in dir(obj) if not n.startswith("_")}
        for name in sorted(public - set(table)):
            self.problems.append(f"{path}.{name}: {cls}.{name} is not classified; is it a whole-store operation?")
        for name in sorted(set(table) - public):
            self.problems.append(f"{cls}.{name} is classified but no longer exists; remove it from SURFACE")
        for name in sorted(public & set(table)):
            await self._attribute(obj, f"{path}.{name}", name, table[name])

    def _check_reachable(self, obj: Any, path: str) -> bool:
        """True for a statekeel object to walk; a plain value passes; anything else is a leak."""
        if isinstance(obj, _LEAVES) or inspect.isroutine(obj):
            return False
        if isinstance(obj, Backend) and not isinstance(obj, (TenantBackend, SealedBackend)):
            self.problems.append(f"{path}: the tenant handle reaches the whole store's backend {type(obj).__name__}")
        elif isinstance(obj, Keyring) and not isinstance(obj, TenantKeyring):
            self.problems.append(f"{path}: the tenant handle reaches the whole store's keyring")
        elif capabilities_of(obj):
            self.problems.append(f"{path}: reaches whole-store capabilities {capabilities_of(obj)}")
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type) and type(obj).__name__ not in SURFACE:
            self._check_record(obj, path)
            return False
        elif not _is_statekeel(obj):
            self.problems.append(f"{path}: reaches {type(obj).__module__}.{type(obj).__name__}, not a statekeel object")
        return _is_statekeel(obj)

    def _check_record(self, record: Any, path: str) -> None:
        for f in dataclasses.fields(record):
            self._check_reachable(getattr(record, f.name), f"{path}.{f.name}")

    async def _attribute(self, obj: Any, path: str, name: str, kind: Kind) -> None:
        if isinstance(kind, Refuses):
            await self._refuses(obj, path, kind)
        elif isinstance(kind, Opens):
            made = kind.make(obj)
            await self.visit(await made if inspect.isawaitable(made) else made, path + "()")
        elif kind in (TENANT, NOTHING):
            if not callable(getattr(obj, name)):
                self.problems.append(f"{path} is classified as a method but is a {type(getattr(obj, name)).__name__}")
        else:
            value = getattr(obj, name)
            if kind == VALUE and not isinstance(value, (*_LEAVES, list, tuple)):
                self.problems.append(f"{path} is classified as a plain value but holds a {type(value).__name__}")
            await self.visit(value, path)

    async def _refuses(self, obj: Any, path: str, kind: Refuses) -> None:
        before = snapshot(self.whole)
        try:
            result = kind.call(obj)
            if inspect.isawaitable(result):
                await result
        except UsageError as exc:
            if "tenant handle" not in str(exc):
                self.problems.append(f"{path}: refused without saying it is a tenant handle: {exc}")
        else:
            self.problems.append(f"{path} is a whole-store operation and ran on a tenant handle")
        if snapshot(self.whole) != before:
            self.problems.append(f"{path}: the refused call changed stored data")
        self.refused.append(path)


def snapshot(store: Store) -> tuple[list[tuple[str, int, bytes]], list[tuple[str, int, int]]]:
    """Every record and log of the whole store (as its root handle sees them)."""
    records, after = [], None
    while page := store.backend.scan("", after=after, limit=500):
        records += [(r.key, r.version, r.data) for r in page]
        after = page[-1].key
    logs = [(i.log, i.first_seq, i.last_seq) for i in store.backend.scan_logs("", limit=10_000)]
    return records, logs


def _fill(store: Store, tenant: str) -> None:
    t = store.tenant(tenant)
    t.app.put("k", f"app of {tenant}")
    t.user("u").put("k", f"user of {tenant}")
    s = t.session("s", user="u")
    s.append(f"history of {tenant}", state={"k": f"state of {tenant}"})
    s.notes.write("observer", f"note of {tenant}")
    with s.decide(f"decision of {tenant}") as d:
        d.outcome("done")
    t.run("r").step("one", lambda: f"step of {tenant}")
    t.events("e").append("happened", {"tenant": tenant})


# -- the surface ---------------------------------------------------------------------------
def test_every_public_attribute_of_a_tenant_handle_is_classified(store_url: str) -> None:
    with statekeel.open(store_url, encryption=Encryption(master_key=KEY), allow_in_event_loop=True) as whole:
        _fill(whole, "acme")
        _fill(whole, "other")
        walk = Walk(whole)

        async def main() -> None:
            await walk.visit(whole.tenant("acme"), "store.tenant('acme')")
            twin = AsyncStore(whole).tenant("acme")
            await walk.visit(twin, "AsyncStore(store).tenant('acme')")

        asyncio.run(main())
    assert walk.problems == [], "\n".join(walk.problems)
    assert set(SURFACE) == walk.classes, f"classified but not reached: {set(SURFACE) - walk.classes}"
    refused = {path.rsplit(".", 1)[-1] for path in walk.refused}
    assert refused == {
        "tenant", "anchor", "master", "keystore", "partitions", "rewrap", "new_version", "begin_reencrypt", "end_reencrypt"
    }


def test_a_new_whole_store_method_fails_the_walk(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk is by reflection: an unclassified method added to Store is reported."""
    monkeypatch.setattr(Store, "vacuum_everything", lambda self: None, raising=False)
    with statekeel.open(store_url, allow_in_event_loop=True) as whole:
        walk = Walk(whole)
        asyncio.run(walk.visit(whole.tenant("acme"), "t"))
    assert any("Store.vacuum_everything is not classified" in p for p in walk.problems), walk.problems


# -- isolation: read, list, write, erase, purge ---------------------------------------------
def test_a_tenant_reads_and_lists_nothing_of_another(store_url: str) -> None:
    with statekeel.open(store_url) as whole:
        _fill(whole, "victim")
        a = whole.tenant("attacker")
        for key in ("victim~app/_/state/k", "../victim~app/_/state/k", "app/_/state/k"):
            assert a.backend.get(key) is None
            assert a.backend.get_many([key]) == [None]
        assert a.backend.scan("", limit=1000) == [] and a.backend.scan_logs("", limit=1000) == []
        assert a.backend.read("victim~session/s/history") == []
        assert a.backend.read_values("victim~session/s/history") == []
        for log in ("victim~session/s/history", "../victim~session/s/history", "session/s/history"):
            assert a.backend.get_many_and_values(["victim~app/_/state/k", "app/_/state/k"], log, limit=5,
                                                 reverse=True) == ([None, None], [])  # fmt: skip
        assert a.backend.log_info("victim~session/s/history") is None
        assert a.app.to_dict() == {} and a.user("u").to_dict() == {}
        assert list(a.sessions()) == [] and a.session_info("s") is None and a.find_session("s") is None
        assert list(a.decisions()) == [] and list(a.runs()) == []
        assert a.events("e").read() == [] and a.events("e").last_seq == 0
        assert whole.tenant("victim").session("s").history() == ["history of victim"]


def test_a_tenant_writes_and_erases_nothing_of_another(store_url: str) -> None:
    with statekeel.open(store_url) as whole:
        _fill(whole, "victim")
        before = snapshot(whole.tenant("victim"))
        a = whole.tenant("attacker")
        _fill(whole, "attacker")
        a.backend.apply([Put("victim~app/_/state/k", b'"owned"', "json"), Delete("victim~app/_/state/k")])
        a.backend.apply([Expire("", time.time() - 1), Expire("victim~", time.time() - 1)])
        a.erase("u")
        a.purge_expired()
        assert a.app.to_dict() == {}  # the attacker's own data did expire
        assert snapshot(whole.tenant("victim")) == before
        assert whole.tenant("victim").user("u").get("k") == "user of victim"


def test_a_tenants_purge_leaves_the_expired_data_of_others(store_url: str) -> None:
    """Regression: the view forwarded purge_expired to the whole store."""
    with statekeel.open(store_url) as whole:
        victim = whole.tenant("victim")
        victim.app.put("gone", "old")
        victim.backend.apply([Expire("app/", time.time() - 1)])
        kept = victim.backend.get("app/_/state/gone", include_expired=True)
        assert whole.tenant("attacker").purge_expired() == 0
        assert victim.backend.get("app/_/state/gone", include_expired=True) == kept
        if kept is not None:  # Redis drops expired keys itself; elsewhere the record waits for the store's purge
            with pytest.raises(ExpiredError):
                victim.app.require("gone")
            assert whole.purge_expired() >= 1  # the store itself purges it
        assert victim.backend.get("app/_/state/gone", include_expired=True) is None


def test_a_tenants_keyring_reaches_only_its_own_keys(store_url: str) -> None:
    with statekeel.open(store_url, encryption=Encryption(master_key=KEY)) as whole:
        _fill(whole, "victim")
        whole.tenant("victim").bind_subject("user:u", "u")
        keyring = whole.tenant("attacker").keyring
        assert isinstance(keyring, TenantKeyring)
        before = snapshot(whole)
        for reach in (lambda: keyring.keystore, lambda: keyring.master):  # every tenant's keys
            with pytest.raises(UsageError, match="this is a tenant handle"):
                reach()
        for call in (
            lambda: keyring.destroy("victim~user/u", "x"),
            lambda: keyring.bind("victim~user/u", "someone"),
            lambda: keyring.current("victim~app/_"),
            lambda: keyring.get("victim~app/_", 1),
            lambda: keyring.destroy("app/_", "x"),  # the untenanted store's partition
        ):
            with pytest.raises(UsageError, match="another tenant or to the store"):
                call()
        assert keyring.subject_partitions("u") == []
        assert snapshot(whole) == before
        assert whole.tenant("victim").user("u").get("k") == "user of victim"


def test_key_rotation_runs_on_the_store_not_a_tenant(store_url: str) -> None:
    with statekeel.open(store_url, encryption=Encryption(master_key=KEY)) as whole:
        _fill(whole, "acme")
        before = snapshot(whole)
        for rotate in (rotate_master, reencrypt, encrypt_store):
            with pytest.raises(UsageError, match="this is a tenant handle.*run it on the store itself"):
                rotate(whole.tenant("acme"))
        assert snapshot(whole) == before  # refused before anything was written
        assert reencrypt(whole).partitions >= 1  # the store itself may
        assert whole.tenant("acme").app.get("k") == "app of acme"


def test_tenants_do_not_nest(store_url: str) -> None:
    """Regression: store.tenant('a').tenant('b') opened a store inside a's key space."""
    with statekeel.open(store_url) as whole:
        with pytest.raises(UsageError, match=r"tenant handle.*store\.tenant\('b'\)"):
            whole.tenant("a").tenant("b")

        async def twin() -> None:
            with pytest.raises(UsageError, match="tenants do not nest"):
                AsyncStore(whole).tenant("a").tenant("b")

        asyncio.run(twin())
        assert snapshot(whole) == ([], [])


def test_a_tenant_handle_gives_out_no_store_address(store_url: str, tmp_path: Path) -> None:
    """Regression: the url was the store's URL plus a suffix, and opening it created a new store."""
    with statekeel.open(store_url) as whole:
        t = whole.tenant("acme")
        assert t.url == t.backend.url and "acme" in t.url
        assert whole.url not in t.url and str(tmp_path) not in t.url
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(ConfigurationError, match="not a store URL"):
            statekeel.open(t.url)
        assert sorted(os.listdir(tmp_path)) == before


# -- portability: a tenant handle copies exactly its own data -------------------------------
def test_copy_and_export_of_a_tenant_handle_move_only_its_data(store_url: str, tmp_path: Path) -> None:
    with statekeel.open(store_url) as whole, statekeel.open(f"sqlite:///{tmp_path}/copy.db") as target:
        _fill(whole, "acme")
        _fill(whole, "other")
        whole.app.put("k", "untenanted")
        report = copy_store(whole.tenant("acme"), target)
        assert report.verified and verify_stores(whole.tenant("acme"), target) == (report.records, report.logs)
        assert target.app.to_dict() == {"k": "app of acme"}
        assert target.session("s").history() == ["history of acme"]
        copied = [r.key for r in target.backend.scan("", limit=1000)]
        assert copied and not any("~" in k for k in copied)  # acme's data as a store of its own, no prefix
        export_store(whole.tenant("other"), str(tmp_path / "other"))
        import_store(str(tmp_path / "other"), whole.tenant("other-2"))
        assert whole.tenant("other-2").events("e").read()[0].data == {"tenant": "other"}
        assert whole.tenant("other-2").app.get("k") == "app of other"
        assert whole.tenant("acme").app.get("k") == "app of acme" and whole.app.get("k") == "untenanted"
