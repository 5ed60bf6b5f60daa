"""A keyed write retried after the connection dropped — also after its commit — is stored once.

PostgreSQL: another connection terminates the server process of the connection in use
(``pg_terminate_backend``) right after a statement ran, so its reply is lost; Redis: the
client socket is dropped before the reply is read (see ``_faults``). The write is retried
with the same idempotency key, as the ``UnavailableError`` text says, until it returns.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import statekeel
from statekeel import StatekeelError, UnavailableError
from statekeel.testing import ServerPool

from ._faults import Fault, install


@pytest.fixture(params=["postgres", "redis"])
def dropped(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
            statekeel_servers: ServerPool) -> Iterator[tuple[str, Fault]]:
    """(store URL, the armed-on-demand fault) for a server backend whose connection can drop."""
    kind: str = request.param
    try:
        server = statekeel_servers.postgres().url if kind == "postgres" else statekeel_servers.redis().url
    except ServerPool.Missing as exc:
        pytest.fail(f"{kind} is needed for this test: {exc}")
    url = f"{server}?schema=sk_idem" if kind == "postgres" else f"{server}?prefix=idem"
    with statekeel.open(url) as store:
        for info in list(store.sessions(limit=1000)):
            store.delete_session(info.id)
    fault = Fault()
    cleanup = install(kind, monkeypatch, fault, server)
    yield url, fault
    cleanup()


def test_retry_with_the_same_key_after_a_dropped_connection_stores_once(
    dropped: tuple[str, Fault],
) -> None:
    url, fault = dropped
    applied_then_dropped = 0
    with statekeel.open(url) as store, statekeel.open(url) as reader:
        for n in range(1, 16):  # the n-th driver call of the keyed append drops the connection
            s = store.session(f"chat-{n}")
            message = {"role": "user", "content": f"turn {n}"}
            fault.arm(n, persistent=False)
            try:
                first = s.append(message, idempotency_key="turn-1")
            except UnavailableError as exc:
                fault.disarm()
                assert exc.maybe_applied and "same key" in str(exc)
                applied_then_dropped += len(reader.session(f"chat-{n}").history())
                first = _retry(lambda: s.append(message, idempotency_key="turn-1"))
            fault.disarm()
            assert first == 1
            assert reader.session(f"chat-{n}").history() == [message], f"drop at driver call {n}"
    assert applied_then_dropped > 0, "no drop hit after a commit: the test did not test the retry"


def _retry(call: object) -> int:
    for _ in range(10):
        try:
            return int(call())  # type: ignore[operator]
        except UnavailableError:
            continue
        except StatekeelError:
            raise
    raise AssertionError("the retry never got through")
