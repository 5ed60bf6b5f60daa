"""Several real processes share one store: compare-and-set keeps every increment."""

from __future__ import annotations

import multiprocessing as mp

import pytest

import statekeel


def _increment(url: str, n: int, key: str) -> int:
    with statekeel.open(url) as store:
        for _ in range(n):
            store.app.update(key, lambda v: v + 1, default=0)
        return int(store.stats["cas_retries"])


def _append(url: str, n: int, worker: int) -> None:
    with statekeel.open(url) as store:
        s = store.session("shared")
        for i in range(n):
            s.append({"worker": worker, "i": i})


def _run(target: object, args: list[tuple[object, ...]]) -> list[object]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(len(args)) as pool:
        return pool.starmap(target, args)  # type: ignore[arg-type]


@pytest.mark.multiprocess
def test_four_processes_times_500_updates(store_url: str, backend_name: str) -> None:
    statekeel.open(store_url).close()  # create the schema once
    retries = _run(_increment, [(store_url, 500, "counter")] * 4)
    with statekeel.open(store_url) as store:
        assert store.app.get("counter") == 2000
    print(f"\n{backend_name}: 2000 increments, {sum(retries)} compare-and-set retries")  # type: ignore[arg-type]


@pytest.mark.multiprocess
def test_concurrent_appends_never_conflict_or_gap(store_url: str, backend_name: str) -> None:
    statekeel.open(store_url).close()
    _run(_append, [(store_url, 200, w) for w in range(4)])
    with statekeel.open(store_url) as store:
        msgs = store.session("shared").messages()
    assert [m.seq for m in msgs] == list(range(1, 801))
    for w in range(4):
        assert [m.value["i"] for m in msgs if m.value["worker"] == w] == list(range(200))
