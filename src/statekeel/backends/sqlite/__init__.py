"""``sqlite:///path.db`` — the embedded default.

WAL journal; ``synchronous=FULL`` by default, so a batch that returned survives
power loss; ``?durability=normal`` trades the last few commits on power loss
(never on a process crash) for fewer fsyncs. Writes take ``BEGIN IMMEDIATE``,
so several processes can share one file: writers queue on the lock for up to
``?timeout=`` seconds (default 30), readers never block.

URL options are ``?durability=`` and ``?timeout=``; any other (``?encrypt=1``,
a misspelt ``?durabilty=``) is refused with a ConfigurationError, never ignored.

Damage at rest is reported, never returned as data: every record and entry is
stored with its checksum and checked on every read (a CorruptionError names
it), and a ``-wal`` file whose damaged frame would make SQLite silently drop
later commits is detected before anything can checkpoint it — the store then
refuses to open and ``statekeel doctor`` lists the problem (see :mod:`.wal`).

Modules: :mod:`.backend` (the class: reads, migrations, health),
:mod:`.connect` (opening: folder, pragmas, WAL mode under racing openers),
:mod:`.writes` (what each op of a batch does), :mod:`.schema` (the tables and
how log entries are numbered), :mod:`.verify` (checksums on the
way out; the formula and its key cache are :mod:`statekeel.protocol.integrity`),
:mod:`.wal` (the WAL check), :mod:`.errors` (``sqlite3``
errors translated).
"""

from __future__ import annotations

from .backend import SQLiteBackend
from .schema import MIGRATIONS

__all__ = ["SQLiteBackend", "MIGRATIONS"]
