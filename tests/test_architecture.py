"""The structure the code promises (docs/architecture.md): layers, sizes, surface, capabilities."""

from __future__ import annotations

import ast
import sqlite3
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import statekeel
from statekeel.backends.tenant import TenantBackend
from statekeel.core import SessionWrites, layout, plan_session_write
from statekeel.errors import UsageError
from statekeel.protocol import Append, Expire, Put, Touch
from statekeel.protocol.capabilities import (
    SupportsIntegrityCheck,
    SupportsRepair,
    SupportsTenants,
    SupportsWalCheckpoint,
    capabilities_of,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "statekeel"


def test_import_layers_and_no_cycles_hold() -> None:
    """The import-linter contracts in .importlinter: layers, and no cycles between siblings."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_mypy_strict_is_clean() -> None:
    """The package type-checks under ``mypy --strict`` (the [tool.mypy] section of pyproject.toml)."""
    mypy = Path(sys.executable).with_name("mypy")
    done = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout


def test_no_module_is_over_500_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 500} == {}


def test_all_is_sorted_and_public_names_carry_docs() -> None:
    assert statekeel.__all__ == sorted(statekeel.__all__)
    assert len(set(statekeel.__all__)) == len(statekeel.__all__)
    for name in statekeel.__all__:
        obj = getattr(statekeel, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"statekeel.{name} has no docstring"


def test_the_version_has_one_source() -> None:
    assert statekeel.__version__ == importlib.metadata.version("statekeel")
    assert [p for p in PACKAGE.rglob("*.py") if '__version__ = "' in p.read_text()] == []
    assert 'value = "0.0.0+unknown"' in (PACKAGE / "__init__.py").read_text()  # a never-installed tree


def test_key_layout_is_spelled_in_one_module() -> None:
    """Only core/layout.py (and the key syntax itself) joins feature key names."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ("core/layout.py", "protocol/keys.py") or rel.startswith(("testing/", "backends/")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "join":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) and first.value in (
                    "session", "idx", "run", "events", "keys", "subjects", "erasures", "user", "app"
                ):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == []


def test_the_session_write_plan_is_pure_and_renews_in_the_same_batch() -> None:
    codec = statekeel.Codec()
    writes = SessionWrites(messages=["hi"], puts=[("k", 1, None, None)])
    plan = plan_session_write("s", 60.0, None, 1000.0, writes, codec)
    kinds = [type(op) for op in plan.ops]
    assert kinds == [Expire, Append, Put, Touch]
    assert plan.ops[-1] == Touch(layout.session_index_key("s"), plan.expires)
    assert plan.expires == pytest.approx(1000.0 + 66.0)
    # while more than the ttl is left, nothing is renewed and the index is not touched
    quiet = plan_session_write("s", 60.0, 1065.0, 1001.0, SessionWrites(), codec)
    assert quiet.ops == (Touch(layout.session_meta_key("s")),)


def test_capabilities_are_declared_not_probed(tmp_path: Path) -> None:
    with statekeel.open(f"sqlite:///{tmp_path}/a.db") as store:
        assert isinstance(store.backend, SupportsWalCheckpoint) and isinstance(store.backend, SupportsIntegrityCheck)
        assert not isinstance(store.backend, SupportsTenants)
    with statekeel.open(f"file://{tmp_path}/files") as store:
        assert isinstance(store.backend, SupportsRepair) and isinstance(store.backend, SupportsIntegrityCheck)
    with statekeel.open("memory://") as store:
        assert capabilities_of(store.backend) == []


@pytest.mark.parametrize("scheme", ["sqlite", "files"])
def test_a_tenant_handle_reaches_no_whole_store_operation(tmp_path: Path, scheme: str) -> None:
    url = f"sqlite:///{tmp_path}/t.db" if scheme == "sqlite" else f"file://{tmp_path}/t"
    with statekeel.open(url) as store:
        view = store.tenant("acme").backend
        assert isinstance(view, TenantBackend)
        assert capabilities_of(view) == []
        for name in ("checkpoint_wal", "integrity_check", "repair", "for_tenant", "inner", "conn"):
            assert not hasattr(view, name), name
        assert view.migrate(check=True).up_to_date


def test_a_tenant_handle_does_not_migrate_the_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # a real SQLite file with no schema yet
    with statekeel.open(f"sqlite:///{path}", migrate=False) as store:
        view = store.tenant("acme").backend
        assert not view.migrate(check=True).up_to_date
        with pytest.raises(UsageError, match="migrate the store itself"):
            view.migrate()
        assert store.backend.migrate(check=True).current == 0  # the refusal changed nothing


def test_no_module_draws_from_the_global_random_generator() -> None:
    """Backoff jitter comes from generators of statekeel's own: a caller that seeds ``random`` for a
    reproducible run must not have its sequence consumed (or its contenders back off in step)."""
    import re

    drawn = re.compile(r"(?<![\w.])random\.(random|uniform|choice|choices|randint|randrange|shuffle|sample|gauss)\(")
    found = [f"{p.relative_to(PACKAGE)}:{n}" for p in PACKAGE.rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1) if drawn.search(line)]  # fmt: skip
    assert found == []


def test_a_plain_sqlite_process_loads_no_asyncio_cryptography_or_package_metadata(tmp_path: Path) -> None:
    """``import statekeel`` is every CLI run's and worker process's start: what a plain SQLite store
    never uses is loaded when first used (the asyncio API, encryption, plugin entry points)."""
    code = (
        "import sys, statekeel\n"
        f"with statekeel.open('sqlite:///{tmp_path}/a.db') as s:\n"
        "    s.session('a').append('hi'); s.session('a').history(); s.app.put('k', 1)\n"
        "print(sorted(m for m in ('asyncio', 'cryptography', 'importlib.metadata') if m in sys.modules))\n"
        "print(statekeel.AsyncStore.__name__, statekeel.__version__ == sys.modules['importlib.metadata']"
        ".version('statekeel'), 'asyncio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "AsyncStore True True"]
