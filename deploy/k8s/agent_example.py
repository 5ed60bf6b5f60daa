"""The smallest agent entry point the manifests in this folder expect (tests/test_deploy_shutdown.py runs it).

It reads the store from ``$STATEKEEL_URL``, holds its session with a lease of
``$AGENT_LEASE_SECONDS`` and stops cleanly on SIGTERM through
:class:`statekeel.GracefulShutdown`: the message being stored is finished, the lease is
released (the next pod takes the session over at once, not after the lease expires) and the
store is closed. Messages come from stdin here, one per line; a real agent reads its queue,
calls its model and tools inside ``stop.work()``.

    STATEKEEL_URL=sqlite:///state.db AGENT_SESSION=demo python agent_example.py
"""

from __future__ import annotations

import os
import socket
import sys

import statekeel


def main() -> int:
    store = statekeel.open()  # $STATEKEEL_URL
    lease = f"{os.environ.get('AGENT_LEASE_SECONDS', '30')}s"
    drain = float(os.environ.get("AGENT_DRAIN_SECONDS", "20"))
    session_id = os.environ.get("AGENT_SESSION") or socket.gethostname()  # the pod's name
    with statekeel.GracefulShutdown(store, drain_timeout=drain) as stop:
        session = stop.hold(store.session(session_id, lease=lease))
        print("ready", flush=True)
        for line in sys.stdin:
            with stop.work():  # SIGTERM never lands inside: the message is stored, then we stop
                session.append({"role": "user", "content": line.rstrip("\n")})
            print(f"stored {line.rstrip()}", flush=True)
    print("stopped cleanly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
