"""A throwaway DynamoDB-API server (moto's standalone server) on a free loopback port.

moto was chosen over dynalite because it implements ``TransactWriteItems`` with
per-item cancellation reasons, condition expressions on every write and
``BatchGetItem`` with ``ConsistentRead`` the way DynamoDB documents them, and it
installs from PyPI (``moto[server]``, in the ``test`` extra) with no Node.js.
It is run with one request at a time (see ``_LAUNCH``): moto's models take no
locks, so concurrent transactions would not be atomic otherwise.
Its other gaps, which the tests do not rely on: data lives in the server's memory only
(:meth:`DynamoDBServer.kill` loses it), TTL deletion never runs (reads filter
expired items anyway), ``ClientRequestToken`` idempotency is not enforced, and
there is no throttling or capacity accounting.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from ._process import (
    DEFAULT_STARTUP_TIMEOUT,
    LOOPBACK,
    POLL_INTERVAL,
    STOP_TIMEOUT,
    Server,
    ServerUnavailable,
    failure,
    file_size,
    make_temp_dir,
    require,
)

_LAUNCH = """
import os, signal, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serialized(environ, start_response):
    with lock:  # moto's models take no locks: one request at a time keeps each transaction atomic
        return list(app(environ, start_response))
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # nothing to flush: moto keeps data in memory
import copy, moto.dynamodb.models as models
class ItemBackup:
    # moto deep-copies a whole table before each transaction (once per item of it), to put the copy back
    # if the transaction is cancelled: O(table) per transaction, so long tests grew quadratic. Instead,
    # the items the transaction names are copied before it runs and put back if it fails.
    # Left to moto (its own copies) if the request is one it rejects anyway, or if its layout differs.
    active = False
    def __getattr__(self, name):
        return getattr(copy, name)
    def deepcopy(self, obj, *memo):
        if self.active and isinstance(obj, models.Table):
            return obj  # no whole-table copy: item_backed puts the named items back instead
        return copy.deepcopy(obj, *memo)
def _saved(backend, transact_items):
    saved = []
    for entry in transact_items:
        for op_type, op in entry.items():
            table = backend.tables[op["TableName"]]
            attrs = op["Item"] if op_type == "Put" else op["Key"]
            h = models.DynamoType(attrs[table.hash_key_attr])
            r = None if table.range_key_attr is None else models.DynamoType(attrs[table.range_key_attr])
            held = table.items.get(h)
            item = held if r is None or held is None else held.get(r)
            saved.append((table, h, r, copy.deepcopy(item)))
    return saved
def _put_back(saved):
    for table, h, r, item in reversed(saved):  # reversed: a key named twice gets its first copy
        if r is None and item is None:
            table.items.pop(h, None)
        elif r is None:
            table.items[h] = item
        elif item is None:
            table.items.get(h, {}).pop(r, None)
        else:
            table.items[h][r] = item
if getattr(models, "copy", None) is copy and hasattr(models, "Table") and hasattr(models, "DynamoType"):
    models.copy, transact = ItemBackup(), models.DynamoDBBackend.transact_write_items
    def item_backed(self, transact_items, *args, **kwargs):
        try:
            saved = _saved(self, transact_items)
        except Exception:  # a missing table or key attribute: moto rejects it, with its own copies
            return transact(self, transact_items, *args, **kwargs)
        models.copy.active = True
        try:
            return transact(self, transact_items, *args, **kwargs)
        except BaseException:
            _put_back(saved)
            raise
        finally:
            models.copy.active = False
    models.DynamoDBBackend.transact_write_items = item_backed
run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True, request_handler=MotoRequestHandler)
"""
"""moto's ``moto.server`` main, with requests serialized: its models take no locks, so two
concurrent TransactWriteItems could otherwise interleave between their condition checks
and their writes — which DynamoDB never does. And a transaction's backup limited to the items it
names (moto deep-copies the whole table for each item of a transaction: a 100-item transaction on a
table of a few hundred items took 1–3 s, and every transaction cost O(table), so a test's appends
slowed down as its table grew)."""

_HINT = "install it with `pip install 'moto[server]'` (part of statekeel's `test` extra)"

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "statekeel-test", "AWS_SECRET_ACCESS_KEY": "statekeel-test"}
"""What boto3 needs to sign requests to the local server (it checks nothing)."""


class DynamoDBServer(Server):
    """moto's DynamoDB-API server in its own process, on a free loopback port.

    Args:
        python: the interpreter that runs ``python -m moto.server`` (default: this one).
        startup_timeout: seconds to wait for the server to answer HTTP.
    """

    def __init__(self, *, python: str | None = None, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        self._python = python or sys.executable
        self._timeout = startup_timeout
        self._dir: Path | None = None
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    def url(self, table: str, *, timeout: float = 120.0) -> str:
        """The store URL of ``table`` on this server.

        With a long ``?timeout=`` by default: botocore sends a request again when the reply is
        late, and moto — unlike DynamoDB — ignores a transaction's ``ClientRequestToken``, so a
        TransactWriteItems that moto answered slowly on a loaded machine would be applied twice.
        """
        return f"dynamodb://{table}?region=us-east-1&endpoint={self.endpoint}&timeout={timeout:g}"

    @property
    def logfile(self) -> Path:
        return require(self._dir, "dir") / "moto.log"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it answers HTTP; a no-op when running.

        Also sets dummy AWS credentials in ``os.environ`` when none are set, so
        boto3 clients (and child processes) can sign requests to it.
        """
        if self.is_running:
            return self
        if importlib.util.find_spec("moto") is None and self._python == sys.executable:
            raise ServerUnavailable(f"moto is not installed; {_HINT}")
        for name, value in DUMMY_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        if self._dir is None:
            self._dir = make_temp_dir("statekeel-dynamodb-", None)
        try:
            self._start_on_free_port(self._port, self._launch)
        except BaseException:
            self._remove_files()
            raise
        self._register_cleanup()
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and delete its directory."""
        self._unregister_cleanup()
        try:
            self.kill(graceful=True)
        finally:
            self._remove_files()

    def kill(self, *, graceful: bool = False) -> None:
        """End the server process (its data is gone: moto keeps it in memory); :meth:`start` starts
        an empty one on the same port."""
        process = self._process
        if process is not None and process.poll() is None:
            if graceful:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                    return
                except subprocess.TimeoutExpired:
                    pass
            process.kill()
            process.wait()

    def _launch(self) -> None:
        offset = file_size(self.logfile)
        command = [self._python, "-c", _LAUNCH, LOOPBACK, str(self.port)]
        with self.logfile.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    command, cwd=self._dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                raise ServerUnavailable(f"could not run {command[0]}: {exc}; {_HINT}") from exc
        try:
            self._wait_ready()
        except ServerUnavailable:
            self.kill()
            raise failure(f"moto.server did not answer on {LOOPBACK}:{self._port} "
                          f"(start-up timeout {self._timeout:g} s); {_HINT}", self.logfile, offset) from None  # fmt: skip
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        self._wait_until(lambda: _answers(self.endpoint), lambda: self._process, self._timeout, POLL_INTERVAL * 5)

    def _remove_files(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._port = None


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as reply:
            return bool(reply.status == 200)
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False
