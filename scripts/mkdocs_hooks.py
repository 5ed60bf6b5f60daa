"""MkDocs hook: links from docs/ to files elsewhere in the repository (``../src/…``,
``../examples/…``) work when the guides are read on a forge, but are not pages of the
site. Such a link whose target exists is turned into the path in code text (or a link to
``repo_url`` when the site has one); one whose target does not exist is left alone, so
``mkdocs build --strict`` still fails on it — a broken reference fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")


def _outside_docs(match: re.Match[str], docs: Path, repo_url: str | None) -> str:
    text, target, anchor = match.group(1), match.group(2), match.group(3) or ""
    path = (docs / target).resolve()
    root = docs.parent.resolve()
    if not path.exists() or root not in path.parents:
        return match.group(0)  # broken: mkdocs reports it
    relative = path.relative_to(root).as_posix() + ("/" if path.is_dir() else "")
    if repo_url:
        return f"[{text}]({repo_url.rstrip('/')}/blob/main/{relative}{anchor})"
    return text if text.strip("`") == relative else f"{text} (`{relative}`)"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite the links of one page that leave docs/ for the rest of the repository."""
    docs = (Path(config["docs_dir"]) / page.file.src_path).parent
    return _LINK.sub(lambda m: _outside_docs(m, docs, config.get("repo_url")), markdown)
