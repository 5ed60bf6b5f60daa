"""Public surface, URLs, the error tree, and SQLite specifics (real files)."""

from __future__ import annotations

import inspect
import os
import sqlite3
from pathlib import Path

import pytest

import statekeel
from statekeel import errors
from statekeel.errors import (
    ConfigurationError,
    MigrationRequiredError,
    NotAStoreError,
    SchemaTooNewError,
    StatekeelError,
)


def test_public_surface_is_what_all_says() -> None:
    public = {n for n in dir(statekeel) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(statekeel, n))}
    assert public - modules == set(statekeel.__all__) - {"__version__"}
    for name in statekeel.__all__:
        assert hasattr(statekeel, name), name


def test_every_error_derives_from_one_root() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if inspect.isclass(obj):
            assert issubclass(obj, StatekeelError), name
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        if inspect.isclass(getattr(errors, name)):
            assert name in doc, f"{name} missing from the tree drawn in errors.__doc__"


@pytest.mark.parametrize(
    "url",
    ["nosuch://x", "sqlite", "", "http://example", "postgresql://host:notaport/db", "sqlite://host/x.db"],
)
def test_bad_urls_list_the_supported_schemes(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        statekeel.open(url or "://")
    text = str(info.value)
    assert "sqlite" in text or "SQLite" in text


def test_url_errors_never_leak_passwords() -> None:
    with pytest.raises(ConfigurationError) as info:
        statekeel.open("sqlite:///x.db?durability=sometimes&password=hunter2")
    assert "durability" in str(info.value) and "hunter2" not in str(info.value)


@pytest.mark.parametrize("query", ["password=hunter2", "sslpassword=hunter2&connect_timeout=1", "PASSWORD=hunter2"])
def test_a_password_in_the_query_is_masked_like_the_one_in_the_address(query: str) -> None:
    """libpq takes ``?password=`` (and ``?sslpassword=``) in the query: an error naming the URL, and the
    store's ``url``, mask it as they mask ``user:password@``."""
    from statekeel.backends._url import split_url

    url = f"postgresql://app:s3cret@127.0.0.1:1/db?{query}"
    assert "hunter2" not in split_url(url).redacted and "s3cret" not in split_url(url).redacted
    assert split_url("sqlite:///x.db?durability=full").redacted == "sqlite:///x.db?durability=full"
    with pytest.raises(statekeel.StatekeelError) as info:  # nothing listens on port 1
        statekeel.open(url)
    assert "hunter2" not in str(info.value) and "s3cret" not in str(info.value)


def test_default_store_is_sqlite_under_dot_statekeel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATEKEEL_URL", raising=False)
    with statekeel.open() as store:
        store.app.put("k", 1)
        assert store.url == "sqlite:///.statekeel/state.db"
    assert (tmp_path / ".statekeel" / "state.db").exists()
    monkeypatch.setenv("STATEKEEL_URL", f"sqlite:///{tmp_path}/env.db")
    with statekeel.open() as store:
        assert store.url.endswith("env.db")


def test_sqlite_durability_modes(tmp_path: Path) -> None:
    for mode, expected in (("full", 2), ("normal", 1)):
        with statekeel.open(f"sqlite:///{tmp_path}/{mode}.db?durability={mode}") as store:
            conn = store.backend._conn  # type: ignore[attr-defined]
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == expected
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ConfigurationError, match="durability"):
        statekeel.open(f"sqlite:///{tmp_path}/x.db?durability=fast")


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(NotAStoreError, match="not a SQLite database"):
        statekeel.open(f"sqlite:///{path}")
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_a_database_that_is_not_a_statekeel_store(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as c:
        c.execute("create table customers(id int)")
    with pytest.raises(NotAStoreError, match="customers"):
        statekeel.open(f"sqlite:///{path}")
    with sqlite3.connect(path) as c:
        assert [r[0] for r in c.execute("select name from sqlite_master")] == ["customers"]


def test_a_store_from_a_newer_statekeel(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    statekeel.open(url).close()
    with sqlite3.connect(tmp_path / "s.db") as c:
        c.execute("insert into statekeel_schema values (99, 0)")
    with pytest.raises(SchemaTooNewError, match="upgrade"):
        statekeel.open(url)


def test_migrate_false_then_check_then_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with statekeel.open(url, migrate=False) as store:
        status = store.backend.migrate(check=True)
        assert status.current == 0 and status.pending and not status.up_to_date
        with pytest.raises(MigrationRequiredError, match="migrate"):
            store.app.get("k")
        assert store.backend.migrate(check=True).current == 0  # check changed nothing
        assert store.backend.migrate().up_to_date
        store.app.put("k", 1)


def test_sqlite_missing_folder_is_created(tmp_path: Path) -> None:
    with statekeel.open(f"sqlite:///{tmp_path}/a/b/c.db") as store:
        store.app.put("k", 1)
    assert (tmp_path / "a" / "b" / "c.db").exists()


def test_sqlite_unwritable_location(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "sqlite:////proc/statekeel-cannot-write-here/x.db"
    else:  # pragma: no cover
        target = "sqlite:////root/x.db"
    with pytest.raises((ConfigurationError, OSError)):
        statekeel.open(target)


def test_unavailable_driver_errors_are_translated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with statekeel.open(url) as store:
        store.backend._conn.close()  # type: ignore[attr-defined]
        with pytest.raises(StatekeelError):
            store.app.get("k")


def test_storage_overhead_after_checkpoint(tmp_path: Path) -> None:
    """1,000 chat turns take no more than 1.5x their payload on disk (the benchmark reports the ratio)."""
    url = f"sqlite:///{tmp_path}/s.db"
    payload = 0
    with statekeel.open(url) as store:
        s = store.session("t1")
        for i in range(1000):
            u, a = "u" * 200, "a" * 800
            payload += len(u) + len(a)
            s.append({"role": "user", "content": u}, {"role": "assistant", "content": a}, state={"turn": i})
        store.backend.checkpoint_wal()  # type: ignore[attr-defined]
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert size <= 1.5 * payload, (size, payload)


def test_every_statekeel_error_in_the_package_is_drawn_in_the_tree() -> None:
    import importlib
    import pkgutil

    import statekeel as pkg

    for info in pkgutil.walk_packages(pkg.__path__, "statekeel."):
        if ".testing" in info.name or info.name.endswith("demo_agent"):
            continue
        importlib.import_module(info.name)
    doc = errors.__doc__ or ""

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    for cls in subclasses(StatekeelError):
        if not cls.__name__.startswith("_"):
            assert cls.__name__ in doc, f"{cls.__module__}.{cls.__name__} is not drawn in statekeel/errors.py"
