"""``sqlite:///path.db`` — the embedded default.

WAL journal; ``synchronous=FULL`` by default, so a batch that returned survives
power loss; ``?durability=normal`` trades the last few commits on power loss
(never on a process crash) for fewer fsyncs. Writes take ``BEGIN IMMEDIATE``,
so several processes can share one file: writers queue on the lock for up to
``?timeout=`` seconds (default 30), readers never block.

Modules: :mod:`.backend` (the class: connection, reads, migrations),
:mod:`.writes` (what each op of a batch does), :mod:`.schema` (the tables and
how log entries are numbered), :mod:`.errors` (``sqlite3`` errors translated).
"""

from __future__ import annotations

from .backend import SQLiteBackend
from .schema import MIGRATIONS

__all__ = ["SQLiteBackend", "MIGRATIONS"]
