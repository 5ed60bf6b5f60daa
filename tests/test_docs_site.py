"""Issue 18: the documentation site (MkDocs + Material + mkdocstrings) builds with warnings as
errors, offline, and its API reference covers everything ``import statekeel`` exports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import statekeel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def _anchors(site: Path) -> set[str]:
    found: set[str] = set()
    for page in (site / "reference").rglob("*.html"):
        found.update(re.findall(r'id="(statekeel\.[A-Za-z0-9_.]+)"', page.read_text()))
    return found


def test_the_reference_documents_every_public_name(site: Path) -> None:
    anchors = _anchors(site)
    missing = sorted(n for n in statekeel.__all__ if f"statekeel.{n}" not in anchors)
    assert not missing, f"not in docs/reference/: {missing}"
    for name in ("statekeel.Store.session", "statekeel.Session.append", "statekeel.Run.step",
                 "statekeel.integrations.langgraph.StatekeelSaver", "statekeel.features.verify.verify",
                 "statekeel.portability.copy_store"):
        assert name in anchors, name


def test_every_guide_is_a_page_and_the_examples_are_shown(site: Path) -> None:
    for guide in (ROOT / "docs").glob("*.md"):
        page = site / ("index.html" if guide.stem == "index" else f"{guide.stem}/index.html")
        assert page.exists(), f"docs/{guide.name} is not in the site (add it to mkdocs.yml's nav)"
    examples = (site / "examples" / "index.html").read_text()
    assert "kill_after" in examples or "kill-after" in examples  # examples/five_tasks.py, inlined


def test_the_site_needs_no_network(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, page


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\nSee [the guide](missing.md) and [code](../nowhere.py).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0]
        .replace("scripts/mkdocs_hooks.py", str(ROOT / "scripts" / "mkdocs_hooks.py"))
        .replace("paths: [src]", f"paths: [{ROOT / 'src'}]")
    )
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert build.returncode != 0
    assert "missing.md" in build.stderr and "nowhere.py" in build.stderr
