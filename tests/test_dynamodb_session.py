"""DynamoDB stores share one boto3 session per process, never what differs between them.

A new boto3 session loads botocore's service model and endpoint data again (0.1-1.5 s an
open); the backend keeps one per process (:mod:`statekeel.backends.dynamodb.config`):

* stores opened with the same settings sign with one credentials object (one session);
* each store still has its own client, with its own endpoint and region;
* stores opened under different AWS credentials (``AWS_*`` changed between the opens, or the
  credentials file edited) sign with their own credentials, as a session of their own would;
* a forked child opens and writes through a session of its own;
* threads opening stores at once all get working clients of the one session.

The tests that change the environment or fork run in a fresh interpreter, so this process's
environment is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import statekeel
from dynamodb_server import server, url  # noqa: F401 - fixtures
from statekeel.backends import open_backend
from statekeel.backends.dynamodb import DynamoDBBackend
from statekeel.testing.servers.dynamodb import DynamoDBServer

_SRC = str(Path(statekeel.__file__).resolve().parents[1])


@pytest.fixture
def backends() -> Iterator[list[DynamoDBBackend]]:
    """Backends a test opens, closed after it."""
    opened: list[DynamoDBBackend] = []
    yield opened
    for backend in opened:
        backend.close()


def _open(backends: list[DynamoDBBackend], store_url: str) -> Any:
    backend = open_backend(store_url)
    assert isinstance(backend, DynamoDBBackend)
    backends.append(backend)
    return backend._table.client


def test_stores_with_the_same_settings_share_one_session(
    server: DynamoDBServer, backends: list[DynamoDBBackend]  # noqa: F811
) -> None:
    a, b = _open(backends, server.url("sk_sess_a")), _open(backends, server.url("sk_sess_b"))
    assert a is not b  # each store closes its own connection pool
    assert a._request_signer._credentials is b._request_signer._credentials  # one credential chain, resolved once
    backends[0].close()
    assert b.describe_table(TableName="sk_sess_b")["Table"]["TableName"] == "sk_sess_b"  # b unaffected


def test_each_store_keeps_its_own_endpoint_and_region(
    server: DynamoDBServer, url: str, backends: list[DynamoDBBackend]  # noqa: F811
) -> None:
    here = _open(backends, url)
    other_region = _open(backends, url.replace("region=us-east-1", "region=eu-west-1"))
    other_endpoint = _open(backends, url.replace(server.endpoint, server.endpoint.replace("127.0.0.1", "localhost")))
    assert (here.meta.region_name, here.meta.endpoint_url) == ("us-east-1", server.endpoint)
    assert other_region.meta.region_name == "eu-west-1"
    assert other_endpoint.meta.endpoint_url == server.endpoint.replace("127.0.0.1", "localhost")
    for client in (here, other_region, other_endpoint):  # each works against its own region's tables
        assert client.describe_table(TableName=url.split("://")[1].split("?")[0])


def test_threads_opening_at_once_get_working_clients_of_one_session(
    server: DynamoDBServer, backends: list[DynamoDBBackend]  # noqa: F811
) -> None:
    def open_and_use(i: int) -> Any:
        backend = open_backend(server.url(f"sk_sess_thread_{i}"))
        assert isinstance(backend, DynamoDBBackend)
        backends.append(backend)  # list.append is atomic
        backend._table.client.describe_table(TableName=f"sk_sess_thread_{i}")
        return backend._table.client

    with ThreadPoolExecutor(6) as pool:
        clients = list(pool.map(open_and_use, range(6)))
    assert len({id(c) for c in clients}) == 6
    assert len({id(c._request_signer._credentials) for c in clients}) == 1


_CHILD_PRELUDE = """
import json, os, sys
from statekeel.backends import open_backend
url = sys.argv[1]
def signed_as(backend):
    # the access key in the Authorization header of a real request
    seen = []
    client = backend._table.client
    client.meta.events.register("before-send.dynamodb", lambda request, **_: seen.append(request.headers["Authorization"]))
    client.list_tables()
    return seen[-1].decode().split("Credential=", 1)[1].split("/", 1)[0]
"""


def _run_child(script: str, url_template: str) -> Any:
    env = {**os.environ, "PYTHONPATH": _SRC, "AWS_ACCESS_KEY_ID": "key-one", "AWS_SECRET_ACCESS_KEY": "secret-one"}
    done = subprocess.run([sys.executable, "-c", _CHILD_PRELUDE + script, url_template],
                          env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_stores_opened_under_other_credentials_sign_with_them(url: str) -> None:  # noqa: F811
    seen = _run_child("""
a = open_backend(url.format("a"))
os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = "key-two", "secret-two"
b = open_backend(url.format("b"))
os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = "key-one", "secret-one"
c = open_backend(url.format("c"))
print(json.dumps([signed_as(a), signed_as(b), signed_as(c)]))
""", url.replace("?", "_{}?", 1))
    assert seen == ["key-one", "key-two", "key-one"]


def test_an_edited_credentials_file_is_read_by_the_next_open(url: str, tmp_path: Path) -> None:  # noqa: F811
    seen = _run_child(f"""
from pathlib import Path
del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
os.environ["AWS_CONFIG_FILE"] = {str(tmp_path / "no-config")!r}
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = path = {str(tmp_path / "credentials")!r}
def credentials(key):
    Path(path).write_text(f"[default]\\naws_access_key_id = {{key}}\\naws_secret_access_key = s\\n")
credentials("file-one")
a = open_backend(url.format("a"))
credentials("file-number-two")
b = open_backend(url.format("b"))
print(json.dumps([signed_as(a), signed_as(b)]))
""", url.replace("?", "_{}?", 1))
    assert seen == ["file-one", "file-number-two"]


def test_a_forked_child_opens_and_writes_with_a_session_of_its_own(url: str) -> None:  # noqa: F811
    result = _run_child("""
from statekeel.backends.dynamodb import config
from statekeel.protocol import Put
parent = open_backend(url.format("parent"))
parent_shared = config._shared
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        child = open_backend(url.format("child"))
        child.apply([Put("k/x/a", b"v", "json")])
        ok = child.get("k/x/a").data == b"v" and config._shared is not parent_shared
        os.write(write, b"1" if ok else b"0")
    finally:
        os._exit(0)
os.waitpid(pid, 0)
print(json.dumps([os.read(read, 1).decode(), signed_as(parent)]))
""", url.replace("?", "_{}?", 1))
    assert result == ["1", "key-one"]
