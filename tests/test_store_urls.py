"""Spelling folders in file:// URLs: absolute, relative, and the mistake in between."""

from __future__ import annotations

from pathlib import Path

import pytest

import statekeel
from statekeel.backends import parse
from statekeel.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        ("file:///srv/agent-state", "/srv/agent-state"),
        ("file://localhost/srv/agent-state", "/srv/agent-state"),
        ("file://./agent-state", "./agent-state"),
        ("file://../agent-state", "../agent-state"),
        ("file:///srv/agent%20state", "/srv/agent state"),
    ],
)
def test_file_urls_name_the_folder_they_spell(url: str, folder: str) -> None:
    assert parse(url).dir_path() == folder


def test_a_file_url_with_a_host_is_refused_with_both_right_spellings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        statekeel.open("file://agent-state/v1")
    text = str(info.value)
    assert "file:///agent-state/v1" in text and "file://./agent-state/v1" in text
    assert not (tmp_path / "agent-state").exists()  # nothing landed in the working directory


def test_the_relative_spelling_opens_under_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with statekeel.open("file://./agent-state") as store:
        store.app.put("k", 1)
    assert (tmp_path / "agent-state" / "statekeel.json").exists()
