"""The DynamoDB backend on a real DynamoDB-API server (moto's, started here), beyond the conformance suite.

* ``dynamodb://`` options: unknown or malformed ones are refused, naming the option.
* The 100-item limit of TransactWriteItems: a batch of more than 100 records commits
  through an intent (test_dynamodb_intents.py), one that also rewrites entries is
  refused whole; any number of log entries commits atomically through the
  write-ahead + header-commit protocol, and entries written ahead of a commit that
  never happened stay invisible.
* TTL: an expired record still stored (DynamoDB deletes lazily) is never returned;
  its ``ttl`` attribute is set for DynamoDB; ``purge_expired`` deletes it.
* Faults: a stopped server is UnavailableError; foreign tables are refused.
* Checksums: bytes changed behind statekeel's back raise CorruptionError naming the
  record or entry, and ``statekeel doctor`` exits 1 listing it.
* Store-level namespaces (``keys/``, ``subjects/``): opening a plain store sends no
  table Scan, and scanning those namespaces is a Query on their fixed item collection.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import statekeel
from dynamodb_server import raw, server, table_name, url  # noqa: F401 - fixtures
from statekeel import ConfigurationError, ConflictError, CorruptionError, InvalidInputError, UnavailableError
from statekeel.backends import open_backend
from statekeel.backends.dynamodb import DynamoDBBackend
from statekeel.backends.dynamodb.items import entry_key, record_key
from statekeel.backends.dynamodb.plan import plan
from statekeel.cli import main
from statekeel.errors import MigrationRequiredError, NotAStoreError
from statekeel.protocol import Append, Entry, LoadEntries, Put, Rewrite
from statekeel.testing.servers.dynamodb import DynamoDBServer


@pytest.fixture
def store(url: str) -> Iterator[statekeel.Store]:
    with statekeel.open(url) as st:
        yield st


# -- URL options ---------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "named"), [
    ("regon=us-east-1", "?region="), ("timeout=nan", "?timeout="), ("timeout=0", "?timeout="),
    ("timeout=1e300", "?timeout="),
    ("endpoint=localhost:8000", "?endpoint="), ("endpoint=ftp://h:1", "?endpoint="),
])  # fmt: skip
def test_bad_url_options_are_refused_naming_the_option(query: str, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace("?", r"\?")):
        open_backend(f"dynamodb://sk_table?{query}")


def test_a_bad_table_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="table name"):
        open_backend("dynamodb://a?region=us-east-1")


# -- the 100-item limit --------------------------------------------------------------------
def test_a_batch_past_the_limit_that_rewrites_entries_is_refused_whole(store: statekeel.Store) -> None:
    """Larger batches commit through an intent (tests/test_dynamodb_intents.py) — except one that
    rewrites log entries, which must fit in one transaction (entries are never tagged)."""
    b = store.storage
    assert isinstance(b, DynamoDBBackend)
    b.limit = 10  # the same refusal, with a tenth of the items
    b.apply([Append("k/x/log", ((b"1", "json"),))])
    ops = [Put(f"k/x/{i:03d}", b"1", "json") for i in range(b.limit)] + [Rewrite("k/x/log", 1, b"2", "json")]
    with pytest.raises(InvalidInputError, match="at most 10 items") as err:
        b.apply(ops)
    assert "split it into several apply() calls" in str(err.value)
    assert b.scan("k/") == [] and [e.data for e in b.read("k/x/log")] == [b"1"]
    assert len(b.apply(ops[: b.limit])) == b.limit


def test_hundreds_of_entries_and_a_record_commit_as_one_batch(store: statekeel.Store) -> None:
    b = store.storage
    b.apply([Append("s/a/log", ((b"0", "json"),))])
    items = tuple((str(i).encode(), "json") for i in range(1, 251))
    results = b.apply([Append("s/a/log", items), Append("s/b/log", items), Put("s/a/n", b"1", "json")])
    assert results == [2, 1, b.get("s/a/n")]
    assert [e.data for e in b.read("s/a/log")] == [b"0", *(d for d, _ in items)]
    assert b.log_info("s/b/log").last_seq == 250  # type: ignore[union-attr]
    b.apply([Append("s/a/log", ((b"after", "json"),))])  # a small append after a big one
    assert [e.seq for e in b.read("s/a/log", limit=2, reverse=True)] == [251, 252]


def test_entries_written_ahead_of_a_commit_that_never_happened_stay_invisible(store: statekeel.Store) -> None:
    """A crash between the write-ahead and the header commit: nothing shows, later appends work."""
    b = store.storage
    assert isinstance(b, DynamoDBBackend)
    b.apply([Append("s/a/log", ((b"0", "json"),))])
    big = [Append("s/a/log", tuple((b"9", "json") for _ in range(150))), Append("s/new/log", ((b"9", "json"),))]
    planned = plan(big, b._snapshot(big, time.time()), time.time(), table_name(b.url), split=True)
    b._write_ahead(planned.entries)  # ...and the process dies before the commit
    assert [e.data for e in b.read("s/a/log", stop=200)] == [b"0"]
    assert b.log_info("s/new/log") is None and b.read("s/new/log") == []
    assert b.apply([Append("s/a/log", ((b"1", "json"),)), Append("s/new/log", ((b"1", "json"),))]) == [2, 1]
    assert [e.data for e in b.read("s/a/log")] == [b"0", b"1"]
    assert [e.data for e in b.read("s/new/log")] == [b"1"]


def test_a_copy_loads_hundreds_of_entries_in_one_batch(store: statekeel.Store) -> None:
    entries = tuple(Entry("s/a/log", seq, f"{seq}".encode(), "json", 1.0 + seq) for seq in range(5, 205))
    assert store.storage.apply([LoadEntries("s/a/log", entries)]) == [200]
    assert store.storage.apply([LoadEntries("s/a/log", entries)]) == [0]  # idempotent
    assert store.storage.read("s/a/log") == list(entries)


def test_text_dynamodb_cannot_store_and_oversized_items_are_refused_with_nothing_written(
    store: statekeel.Store,
) -> None:
    b = store.storage
    for ops in ([Put("k/x/ok", b"1", "json"), Put("k/x/\udc80", b"1", "json")],
                [Put("k/x/ok", b"1", "json"), Append("k/x/log", ((b"1", "json\ud800"),))],
                [Put("k/x/ok", b"1", "json"), Put("k/x/" + "a" * 1100, b"1", "json")],
                [Put("k/x/ok", b"1", "json"), Put("k/x/big", b"1" * 500_000, "json")]):  # fmt: skip
        with pytest.raises(InvalidInputError, match="nothing was written"):
            b.apply(ops)
    assert b.scan("k/") == [] and b.scan_logs("k/") == []


def test_a_handle_that_remembers_a_moved_log_header_judges_at_on_a_fresh_read(url: str) -> None:
    """A handle appends without reading the header it last wrote; when another handle moved the
    log meanwhile, an ``Append(at=...)`` that is right for the stored log must still succeed."""
    a, b = open_backend(url), open_backend(url)
    assert a.apply([Append("s/a/log", ((b"1", "json"),))]) == [1]
    assert b.apply([Append("s/a/log", ((b"2", "json"),))]) == [2]
    assert a.apply([Append("s/a/log", ((b"3", "json"),), at=3)]) == [3]
    assert a.apply([Append("s/a/log", ((b"4", "json"),))]) == [4]
    with pytest.raises(ConflictError):
        b.apply([Append("s/a/log", ((b"x", "json"),), at=4)])
    assert [e.data for e in b.read("s/a/log")] == [b"1", b"2", b"3", b"4"]


# -- TTL -----------------------------------------------------------------------------------
def test_an_expired_record_still_stored_is_never_returned_and_purge_deletes_it(
    store: statekeel.Store, url: str, raw: Any
) -> None:
    b = store.storage
    now = time.time()
    expires = now - 5.5
    b.apply([Put("s/a/gone", b"1", "json", expires_at=expires), Put("s/a/kept", b"2", "json"),
             Append("s/a/old", ((b"x", "json"),), expires_at=expires)], now=now - 10)  # fmt: skip
    item = raw.get_item(TableName=table_name(url), Key=record_key("s/a/gone"))["Item"]
    assert item["ttl"] == {"N": str(math.ceil(expires))}  # what DynamoDB's TTL deletes by — some day
    assert b.get("s/a/gone") is None and b.get_many(["s/a/gone"]) == [None]
    assert [r.key for r in b.scan("s/a/")] == [r.key for r in b.scan("")] == ["s/a/kept"]
    assert b.read("s/a/old") == [] and b.scan_logs("") == []
    assert b.purge_expired() == 2
    assert "Item" not in raw.get_item(TableName=table_name(url), Key=record_key("s/a/gone"))
    assert "Item" not in raw.get_item(TableName=table_name(url), Key=entry_key("s/a/old", 1))
    assert b.get("s/a/kept") is not None


# -- faults --------------------------------------------------------------------------------
def test_a_stopped_server_is_unavailable_with_retry_advice() -> None:
    srv = DynamoDBServer().start()
    url = srv.url("sk_down", timeout=2)
    backend = open_backend(url)
    srv.stop()
    with pytest.raises(UnavailableError, match="unreachable") as err:
        backend.get("k/x/a")
    assert err.value.maybe_applied
    with pytest.raises(UnavailableError):
        backend.apply([Put("k/x/a", b"1", "json")])


def test_a_missing_table_without_migrate_and_a_foreign_table_are_refused(url: str, raw: Any) -> None:
    with pytest.raises(MigrationRequiredError, match="statekeel migrate"):
        open_backend(url, migrate=False).get("k/x/a")
    assert open_backend(url, migrate=False).migrate(check=True).current == 0
    name = table_name(url)
    raw.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])  # fmt: skip
    raw.put_item(TableName=name, Item={"pk": {"S": "user#1"}, "sk": {"S": "profile"}})
    with pytest.raises(NotAStoreError, match="did not write"):
        open_backend(url)
    raw.create_table(TableName=name + "_id", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])  # fmt: skip
    with pytest.raises(NotAStoreError, match="another key schema"):
        open_backend(url.replace(name, name + "_id"))


# -- checksums -----------------------------------------------------------------------------
def _doctor(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["doctor", url])
    return result.exit_code, result.output


def _one_digit_changed(data: bytes) -> bytes:
    i = max(i for i, ch in enumerate(data) if chr(ch).isdigit())
    return data[:i] + str((int(chr(data[i])) + 1) % 10).encode() + data[i + 1 :]


def _set(raw: Any, url: str, key: dict[str, Any], name: str, value: dict[str, Any]) -> None:
    raw.update_item(TableName=table_name(url), Key=key, UpdateExpression="SET #a = :v",
                    ExpressionAttributeNames={"#a": name}, ExpressionAttributeValues={":v": value})  # fmt: skip


def _get(raw: Any, url: str, key: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = raw.get_item(TableName=table_name(url), Key=key)["Item"]
    return item


DAMAGE: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    "a digit of the data": lambda item: ("d", {"B": _one_digit_changed(bytes(item["d"]["B"]))}),
    "the version": lambda item: ("v", {"N": "3"}),
    "the codec": lambda item: ("c", {"S": "json+zlib"}),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_record_raises_on_every_read_and_doctor_lists_it(
    url: str, store: statekeel.Store, raw: Any, damage: str
) -> None:
    store.app.put("ticket", {"id": 991})
    store.app.put("ticket", {"id": 992})
    store.app.put("other", {"id": 1})
    key = "app/_/state/ticket"
    _set(raw, url, record_key(key), *DAMAGE[damage](_get(raw, url, record_key(key))))
    reads: list[Callable[[], object]] = [
        lambda: store.backend.get(key), lambda: store.backend.get_many(["app/_/state/other", key]),
        lambda: store.backend.scan("app/"), lambda: store.backend.scan(""), lambda: store.app.get("ticket"),
    ]  # fmt: skip
    for read in reads:
        with pytest.raises(CorruptionError, match="ticket") as err:
            read()
        assert err.value.key == key
    assert store.app.get("other") == {"id": 1}
    code, out = _doctor(url)
    assert code == 1 and "ticket" in out, out


def test_a_damaged_entry_raises_naming_its_seq_and_doctor_lists_it(url: str, store: statekeel.Store, raw: Any) -> None:
    s = store.session("s1")
    s.append("m-100", "m-200", "m-300")
    log = next(i.log for i in store.backend.scan_logs("session/s1/"))
    key = entry_key(log, 2)
    _set(raw, url, key, "d", {"B": _one_digit_changed(bytes(_get(raw, url, key)["d"]["B"]))})
    for read in [lambda: store.backend.read(log), lambda: store.backend.read(log, limit=2, reverse=True),
                 lambda: store.backend.read_values(log), s.history]:  # fmt: skip
        with pytest.raises(CorruptionError, match="entry 2") as err:
            read()
        assert (err.value.key, err.value.seq) == (log, 2)
    assert [e.seq for e in store.backend.read(log, start=3)] == [3]
    code, out = _doctor(url)
    assert code == 1 and "history" in out, out


def test_doctor_passes_on_a_healthy_store(url: str, store: statekeel.Store) -> None:
    store.session("s1").append("hello")
    store.app.put("ticket", {"id": 1})
    code, out = _doctor(url)
    assert code == 0, out


# -- store-level namespaces are Queries, not table Scans (issue 17) -----------------------------
def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DynamoDB operation the backends opened from now on send, by name (a botocore
    ``before-call`` hook on the real client: the requests still reach the real server)."""
    import statekeel.backends.dynamodb.backend as dynamo_backend

    sent: list[str] = []
    real = dynamo_backend.client

    def counted(config: Any) -> Any:
        boto = real(config)
        boto.meta.events.register("before-call.dynamodb", lambda model, **_: sent.append(model.name))
        return boto

    monkeypatch.setattr(dynamo_backend, "client", counted)
    return sent


def test_opening_a_plain_store_with_many_partitions_never_scans_the_table(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with statekeel.open(url) as st:
        for i in range(40):
            st.session(f"s{i}").append(f"m{i}")
    sent = _counting(monkeypatch)
    with statekeel.open(url) as st:
        assert len(st.session("s7").history()) == 1
    assert sent and "Scan" not in sent, sent


def test_scans_of_the_keystore_and_subjects_namespaces_are_queries(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = open_backend(url, migrate=True)
    setup.apply([Put(f"session/s{i}/meta", b"{}", "json") for i in range(30)])
    setup.apply([Put(f"keys/session%2Fs{i:02}", b'{"n": %d}' % i, "json") for i in range(30)])
    setup.apply([Put(f"subjects/d{i % 3}/session%2Fs{i:02}", b"{}", "json") for i in range(30)])
    setup.close()
    sent = _counting(monkeypatch)
    backend = open_backend(url)
    keys = backend.scan("keys/", limit=1000)
    subjects = backend.scan("subjects/", limit=1000)
    one = backend.scan("subjects/d1/", limit=1000)
    first = backend.scan("keys/", limit=1)
    after = backend.scan("keys/", after="keys/session%2Fs27", limit=10)
    backend.close()
    assert [r.key for r in keys] == [f"keys/session%2Fs{i:02}" for i in range(30)]
    assert [r.data for r in first] == [b'{"n": 0}']
    assert [r.key for r in after] == ["keys/session%2Fs28", "keys/session%2Fs29"]
    assert len(subjects) == 30 and sorted(r.key for r in subjects) == [r.key for r in subjects]
    assert [r.key for r in one] == [f"subjects/d1/session%2Fs{i:02}" for i in range(1, 30, 3)]
    assert "Scan" not in sent and sent.count("Query") >= 5, sent


def test_an_encrypted_store_keeps_its_keystore_in_one_item_collection_and_reopens(url: str, raw: Any) -> None:
    key = base64.b64encode(b"K" * 32).decode()
    with statekeel.open(url, encryption=statekeel.Encryption(master_key=key)) as st:
        for i in range(5):
            st.session(f"s{i}").append(f"secret {i}")
    stored = raw.query(TableName=table_name(url), KeyConditionExpression="pk = :pk",
                       ExpressionAttributeValues={":pk": {"S": "nkeys"}})["Items"]  # fmt: skip
    sks = [item["sk"]["S"] for item in stored]
    assert all(sk.startswith("kkeys/") for sk in sks) and sum(sk.startswith("kkeys/session%2Fs") for sk in sks) == 5
    with pytest.raises(statekeel.KeyUnavailableError):
        statekeel.open(url)
    with statekeel.open(url, encryption=statekeel.Encryption(master_key=key)) as st:
        assert st.session("s3").history() == ["secret 3"]


def test_the_test_servers_cancelled_transactions_leave_every_named_item_as_it_was(url: str, raw: Any) -> None:
    """The local server puts back only the items a cancelled transaction names (not a copy of the
    whole table): updated, overwritten, deleted and new items all come back as they were, on a
    table of its own shape (hash + range) and on a hash-only one."""
    for table, key_schema in ((table_name(url), ["pk", "sk"]), (table_name(url) + "_h", ["pk"])):
        raw.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in key_schema],
            KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in zip(key_schema, ("HASH", "RANGE"))],
        )  # fmt: skip

        def key(name: str, schema: list[str] = key_schema) -> dict[str, Any]:
            return {a: {"S": name} for a in schema}

        for name in ("upd", "over", "gone", "other"):
            raw.put_item(TableName=table, Item={**key(name), "v": {"N": "1"}, "l": {"L": [{"N": "1"}]}})
        before = sorted(map(str, raw.scan(TableName=table)["Items"]))
        cancelled = [
            {"Update": {"TableName": table, "Key": key("upd"),
                        "UpdateExpression": "SET v = :two, l = list_append(l, :l)",
                        "ExpressionAttributeValues": {":two": {"N": "2"}, ":l": {"L": [{"N": "2"}]}}}},
            {"Put": {"TableName": table, "Item": {**key("over"), "v": {"N": "3"}}}},
            {"Delete": {"TableName": table, "Key": key("gone")}},
            {"Put": {"TableName": table, "Item": {**key("new"), "v": {"N": "4"}}}},
            {"ConditionCheck": {"TableName": table, "Key": key("other"), "ConditionExpression": "v = :nine",
                                "ExpressionAttributeValues": {":nine": {"N": "9"}}}},
        ]  # fmt: skip
        with pytest.raises(raw.exceptions.TransactionCanceledException):
            raw.transact_write_items(TransactItems=cancelled)
        assert sorted(map(str, raw.scan(TableName=table)["Items"])) == before
        raw.transact_write_items(TransactItems=cancelled[:4])  # the same writes, committed, still apply
        after = {item[key_schema[0]]["S"]: item for item in raw.scan(TableName=table)["Items"]}
        assert sorted(after) == ["new", "other", "over", "upd"]
        assert after["upd"]["v"] == {"N": "2"} and after["upd"]["l"] == {"L": [{"N": "1"}, {"N": "2"}]}
