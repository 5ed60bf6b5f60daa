"""Third-party backends: the scheme registry, entry-point plugins, and the example
package in examples/backend_plugin passing the public conformance suite.

scripts/test.sh installs examples/backend_plugin into the test environment; without
it the plugin tests fail in CI and skip elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import missing

import statekeel
from statekeel import backends
from statekeel.backends import ParsedURL, register_scheme, registered_schemes
from statekeel.backends.memory import MemoryBackend
from statekeel.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "writing-a-backend.md"


@pytest.fixture
def plugin_installed() -> None:
    if importlib.util.find_spec("statekeel_example_backend") is None:
        missing("examples/backend_plugin is not installed: pip install -e examples/backend_plugin")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are undone after it."""
    registered_schemes()  # entry points are read once: read them into the registry kept
    monkeypatch.setattr(backends, "_registry", dict(backends._registry))


def run_python(code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, **kwargs
    )


# -- the example package, through its entry point ----------------------------------


@pytest.mark.usefixtures("plugin_installed")
def test_open_finds_the_example_backend_by_entry_point_with_nothing_imported() -> None:
    result = run_python("""
        import sys
        import statekeel
        from statekeel.backends import registered_schemes
        assert "example" in registered_schemes()
        assert "statekeel_example_backend" not in sys.modules  # listed, not imported
        with statekeel.open("example://agent") as store:
            store.app.put("greeting", {"text": "hello"})
            again = statekeel.open("example://agent")
            print(type(store.backend).__module__, again.app.get("greeting")["text"], store.url)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["statekeel_example_backend.backend", "hello", "example://agent"]


@pytest.mark.usefixtures("plugin_installed")
def test_the_example_backend_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(ConfigurationError, match="just a name"):
        statekeel.open("example://agent/sub/dir")
    with pytest.raises(ConfigurationError, match=r"no \?options"):
        statekeel.open("example://agent?pool=3")


def documented_conformance_command() -> list[str]:
    """The command docs/writing-a-backend.md tells third parties to run, for the example."""
    commands = [line.strip() for line in GUIDE.read_text().splitlines() if line.strip().startswith("pytest -p")]
    matching = [c for c in commands if "--statekeel-backends=example" in c]
    assert len(matching) == 1, f"expected one documented conformance command, found {commands}"
    return shlex.split(matching[0])


MULTIPROCESS_ONLY = "got empty parameter set for (backend_name)"
"""pytest's reason for a test no selected backend runs: the multi-process tests, for a backend
whose stores live in one process (the example's) — the only skips the guide announces."""


def summary_counts(output: str) -> dict[str, int]:
    """``{"passed": 185, "skipped": 10}`` from pytest's last line."""
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", last)}


@pytest.mark.usefixtures("plugin_installed")
def test_the_example_backend_passes_the_documented_conformance_command(tmp_path: Path) -> None:
    command = documented_conformance_command()
    assert command[:3] == ["pytest", "-p", "statekeel.testing.plugin"]
    env = {**os.environ, "PYTEST_ADDOPTS": "-p no:cacheprovider -rs"}
    result = subprocess.run(  # the timeout only stops a run that hangs; how long it takes is benchmarks' business
        [sys.executable, "-m", *command], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env
    )
    counts = summary_counts(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) + counts.get("errors", 0) == 0, counts
    assert counts.get("passed", 0) >= 300, counts
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert bool(skips) == bool(counts.get("skipped")) and all(MULTIPROCESS_ONLY in line for line in skips), skips


def test_an_unregistered_conformance_backend_stops_the_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "statekeel.testing.plugin", "-p", "no:cacheprovider",
         "--statekeel-backends=nosuch", "--pyargs", "statekeel.testing.conformance"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout[-2000:]
    assert "nosuch, which no plugin registered" in result.stdout + result.stderr


_MARKED = """
import pytest
pytestmark = pytest.mark.statekeel_backends("memory", "sqlite")
def test_one(backend_name): pass
"""


@pytest.mark.parametrize(("option", "expected"), [
    ([], ["memory", "sqlite"]),  # the mark's backends, not the default five
    (["--statekeel-backends=sqlite,redis"], ["sqlite"]),  # narrowed to those the option names
    (["--statekeel-backends=redis"], ["NOTSET"]),  # none left: pytest's "got empty parameter set" skip
])  # fmt: skip
def test_a_module_names_its_backends_with_the_mark(tmp_path: Path, option: list[str], expected: list[str]) -> None:
    (tmp_path / "test_marked.py").write_text(_MARKED)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "statekeel.testing.plugin", "-p", "no:cacheprovider",
         "--collect-only", "-q", *option, "test_marked.py"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    collected = [line.split("[")[1].rstrip("]") for line in result.stdout.splitlines() if "::test_one[" in line]
    assert collected == expected, result.stdout[-2000:] + result.stderr[-2000:]


# -- register_scheme ------------------------------------------------------------------


class TinyBackend(MemoryBackend):
    """A Backend subclass is a factory: ``TinyBackend(parsed_url, **options)``."""

    def __init__(self, url: ParsedURL, *, migrate: bool = True) -> None:
        super().__init__(None, migrate=migrate)
        self.url = url.redacted


@pytest.mark.usefixtures("registry")
def test_register_scheme_with_a_class_a_callable_or_a_lazy_string() -> None:
    register_scheme("tiny", TinyBackend)
    register_scheme("tiny+fn", lambda url, **options: TinyBackend(url, **options))
    register_scheme("tiny-lazy", f"{__name__}:TinyBackend")
    for scheme in ("tiny", "tiny+fn", "tiny-lazy"):
        with statekeel.open(f"{scheme}://x") as store:
            store.app.put("k", 1)
            assert store.app.get("k") == 1 and isinstance(store.backend, TinyBackend)
    assert {"tiny", "tiny+fn", "tiny-lazy"} <= set(registered_schemes())
    register_scheme("tiny", TinyBackend)  # the same registration again is a no-op


@pytest.mark.parametrize("name", ["MyBackend", "my_backend", "1st", "", "tiny://", "a b", 7])
def test_register_scheme_refuses_a_bad_name(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="lower-case letters"):
        register_scheme(name, TinyBackend)


@pytest.mark.usefixtures("registry")
def test_replacing_a_registered_scheme_needs_replace_true() -> None:
    with pytest.raises(ConfigurationError, match=r"sqlite:// scheme is already registered .*replace=True"):
        register_scheme("sqlite", TinyBackend)
    register_scheme("sqlite", "statekeel.backends.sqlite:SQLiteBackend")  # what it already is: fine
    register_scheme("sqlite", TinyBackend, replace=True)
    with statekeel.open("sqlite:///never-created.db") as store:
        assert isinstance(store.backend, TinyBackend)


@pytest.mark.usefixtures("registry")
def test_register_scheme_refuses_a_factory_that_is_not_one() -> None:
    with pytest.raises(ConfigurationError, match="module:ClassName"):
        register_scheme("tiny", "TinyBackend")
    with pytest.raises(ConfigurationError, match="got int"):
        register_scheme("tiny", 42)  # type: ignore[arg-type]
    register_scheme("not-a-backend", lambda url, **options: object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a statekeel.protocol.Backend"):
        statekeel.open("not-a-backend://x")


@pytest.mark.usefixtures("registry")
def test_a_factory_that_fails_to_import_is_a_configuration_error() -> None:
    register_scheme("broken", "statekeel_no_such_module:Factory")
    assert backends.parse("broken://x").scheme == "broken"  # parsing never imports it
    with pytest.raises(ConfigurationError, match="statekeel_no_such_module") as info:
        statekeel.open("broken://x")
    assert "ModuleNotFoundError" in str(info.value) and "register_scheme" in str(info.value)
    register_scheme("broken-attr", "statekeel.backends.memory:NoSuchBackend")
    with pytest.raises(ConfigurationError, match="AttributeError.*NoSuchBackend"):
        statekeel.open("broken-attr://x")


def test_an_unknown_scheme_lists_every_registered_one() -> None:
    with pytest.raises(ConfigurationError) as info:
        statekeel.open("nosuch://x")
    text = str(info.value)
    for scheme in registered_schemes():
        assert f"{scheme}://" in text
    assert "statekeel.backends" in text and "writing-a-backend" in text


# -- entry points that go wrong ---------------------------------------------------------


def fake_distribution(site: Path, entry_points: str, modules: dict[str, str]) -> None:
    """An installed distribution ``broken-plugin`` on ``site`` (a directory put on sys.path)."""
    info = site / "broken_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))


def test_an_entry_point_that_fails_to_import_names_its_distribution(tmp_path: Path) -> None:
    fake_distribution(
        tmp_path,
        """
        [statekeel.backends]
        broken = broken_plugin_mod:Factory
        Not_A_Scheme = broken_plugin_mod:Factory
        """,
        {"broken_plugin_mod": "raise ImportError('libbroken.so: cannot open shared object file')"},
    )
    result = run_python(
        """
        import warnings
        import statekeel
        from statekeel.errors import ConfigurationError
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                statekeel.open("broken://x")
            except ConfigurationError as exc:
                print(exc)
        print("WARNING:", *[w.message for w in caught])
        """,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 0, result.stderr
    error, warning = result.stdout.strip().split("\nWARNING:")
    assert "'broken-plugin'" in error and "ImportError: libbroken.so" in error
    assert "broken_plugin_mod:Factory" in error
    assert "Not_A_Scheme" in warning and "'broken-plugin'" in warning
