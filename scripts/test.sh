#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs them.
# Real servers only: PostgreSQL (initdb + pg_ctl) and redis-server are started by
# the tests themselves on free loopback ports; with CI set, a missing one fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 && ! command -v valkey-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
    else
        echo "redis-server is missing: sudo apt-get install redis-server" >&2
    fi
fi
# PostgreSQL server binaries (initdb, pg_ctl), psql and pgbouncer (the transaction-mode test)
need=""
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
command -v psql >/dev/null 2>&1 || need="$need postgresql-client"
command -v pgbouncer >/dev/null 2>&1 || need="$need pgbouncer"
if [ -n "$need" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
    # the packages start their own services; the tests start private servers instead
    service pgbouncer stop >/dev/null 2>&1 || true
    service postgresql stop >/dev/null 2>&1 || true
fi

# Chromium for the inspector's browser tests (tests/ui/): Debian's package, driven by Playwright
# at /usr/bin/chromium (executable_path) — Playwright downloads no browser. With CI set, missing is a failure.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is missing: sudo apt-get install chromium" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/python -m pip install -q -e examples/backend_plugin  # a third-party backend, proven by tests/test_backend_plugin.py
# Bytecode for the source tree, written once here: the tests start ~1,100 Python processes (workers,
# CLI runs, SIGKILL and fault-injection children), and with PYTHONDONTWRITEBYTECODE set (as on some
# machines) each of them compiled the ~80 modules `import statekeel` loads again: 0.29 s of CPU a start instead of 0.15.
unset PYTHONDONTWRITEBYTECODE
.venv/bin/python -m compileall -q -j 0 src examples >/dev/null
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
# Four workers (pytest-xdist) on two cores: many tests wait on fsyncs, servers, subprocesses and lease
# timers, so workers beyond the core count fill the idle time. Measured on the whole first run
# (6,885 tests, 2026-12-03): 13:37 with 3 workers, 11:08 with 4 (CPU idle 4.5 % of the run). Each
# worker starts its own servers; an idle worker takes tests queued for another (--dist worksteal),
# so a few long tests scheduled late do not leave the others idle.
workers="${STATEKEEL_TEST_WORKERS:-4}"
# --durations: the slowest tests, named in the CI log (what to look at when CI grows past 20 minutes).
# One run: tests/test_conformance_topologies.py runs the whole conformance suite again on DynamoDB (a
# local moto server the tests start) and on the tiered Redis-hot/PostgreSQL-cold store in both modes,
# among the other tests (two runs one after the other each waited for their slowest test at the end).
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist worksteal --durations=15
