"""Tenant isolation on every backend: nothing crosses from one tenant to another."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeel
from statekeel import Encryption, Store
from statekeel.errors import IntegrityError
from statekeel.protocol import Put

ADVERSARIAL = ["acme", "acme~session", "acme~", "a/b", "..", "%7E", "x\x00y", "日本", "'; drop", "_", "%", "~"]


def _fill(store: Store, tenant: str) -> None:
    t = store.tenant(tenant)
    t.app.put("k", f"app of {tenant}")
    t.user("u").put("k", f"user of {tenant}")
    t.session("s", user="u").append(f"history of {tenant}", state={"k": f"state of {tenant}"})


def test_each_tenant_sees_only_itself(store: Store) -> None:
    for tenant in ADVERSARIAL:
        _fill(store, tenant)
    for tenant in ADVERSARIAL:
        t = store.tenant(tenant)
        assert t.app.to_dict() == {"k": f"app of {tenant}"}
        assert t.user("u").to_dict() == {"k": f"user of {tenant}"}
        assert [i.id for i in t.sessions()] == ["s"]
        assert t.session("s").history() == [f"history of {tenant}"]
        kinds = {r.key.split("/")[0] for r in t.backend.scan("", limit=1000)}
        assert kinds <= {"app", "user", "session", "idx", "keys", "subjects"}, kinds
        assert [i.log for i in t.backend.scan_logs("", limit=1000)] == ["session/s/history"]
    # the untenanted handle sees none of the tenants' sessions as its own
    assert list(store.sessions()) == []


def test_tenant_writes_cannot_reach_another_tenant(store: Store) -> None:
    _fill(store, "victim")
    attacker = store.tenant("attacker")
    for key in ["../victim~app/_/state/k", "victim~app/_/state/k", "/", "~", "%7E"]:
        attacker.app.put(key, "overwritten?")
        attacker.backend.apply([Put(key, b'"raw"', "json")])
    assert store.tenant("victim").app.get("k") == "app of victim"
    assert store.tenant("victim").app.to_dict() == {"k": "app of victim"}


names = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=names, b=names, key=names)
def test_hypothesis_no_cross_tenant_leak(store: Store, a: str, b: str, key: str) -> None:
    if a == b:
        return
    store.tenant(a).app.put(key, f"from {a}")
    store.tenant(a).session(key).append(f"from {a}")
    seen_by_b = store.tenant(b)
    assert all(i.value == f"from {b}" for i in seen_by_b.app.items(limit=1000))  # every value b sees is b's own
    for info in seen_by_b.sessions(limit=1000):
        assert set(seen_by_b.session(info.id).history()) <= {f"from {b}"}
    seen_by_b.app.put(key, f"from {b}")
    assert store.tenant(a).app.get(key) == f"from {a}"


def test_encrypted_tenants_have_their_own_keys(store_url: str) -> None:
    key = base64.b64encode(b"T" * 32).decode()
    with statekeel.open(store_url, encryption=Encryption(master_key=key)) as store:
        a, b = store.tenant("a"), store.tenant("b")
        a.app.put("k", "secret of a")
        b.app.put("k", "secret of b")
        rec_a = store.storage.get("a~" + a.app._full_key("k"))
        assert rec_a is not None
        # a's ciphertext copied into b's record does not decrypt: the tenant is bound in
        store.storage.apply([Put("b~" + b.app._full_key("k"), rec_a.data, rec_a.codec)])
        try:
            b.app.get("k")
        except IntegrityError:
            pass
        else:
            raise AssertionError("a ciphertext moved across tenants was accepted")
        assert a.app.get("k") == "secret of a"


def test_erasure_in_one_tenant_leaves_the_same_subject_in_another(store_url: str) -> None:
    key = base64.b64encode(b"E" * 32).decode()
    with statekeel.open(store_url, encryption=Encryption(master_key=key)) as store:
        for tenant in ("a", "b"):
            t = store.tenant(tenant)
            t.user("u").put("profile", f"u of {tenant}")
            t.session("s", user="u").append(f"hello from {tenant}")
        store.user("u").put("profile", "u untenanted")
        done = store.tenant("a").erase("u")
        assert done.partitions == 2
        assert store.tenant("a").user("u").get("profile") is None
        assert list(store.tenant("a").sessions()) == []
        assert store.tenant("b").user("u").get("profile") == "u of b"
        assert store.tenant("b").session("s").history() == ["hello from b"]
        assert store.user("u").get("profile") == "u untenanted"
