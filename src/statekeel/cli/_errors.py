"""Library error messages in CLI terms.

Library errors end with what to do next, written for Python callers ("list runs
with store.runs()"). At the CLI's boundary (``cli/__init__.py``) the known hints
are rewritten into the command that does the same; the rest of the message is
kept as the library wrote it.
"""

from __future__ import annotations

import re

__all__ = ["in_cli_terms"]

_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"list runs with store\.runs\(\)", "see `statekeel runs list`"),
    (r"see store\.decisions\(\) or (`statekeel decisions list`)", r"see \1"),
    (r"list them with store\.decisions\(\)", "see `statekeel decisions list`"),
    (r"open it with store\.session\(id\) first", "see `statekeel sessions list`"),
    (r"see session\.checkpoints\(\)", "see `statekeel checkpoints list SESSION`"),
    (r"no '([^']+)' in (\S+); write it first or use get\(key, default\)",
     r"no '\1' in \2; write it first: `statekeel state set \2 \1 JSON_VALUE`"),
    (r"Supply it with store\.resume_run\([^`]*\) or (`statekeel runs resume)", r"Supply it with \1"),
))


def in_cli_terms(message: str) -> str:
    """``message`` with each known Python hint replaced by the matching ``statekeel`` command."""
    for pattern, replacement in _REWRITES:
        message = pattern.sub(replacement, message)
    return message
