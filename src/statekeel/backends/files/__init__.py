"""``file:///dir`` — a store as plain files a person can read and ``git diff``.

Layout (stable, documented in ``docs/files-backend.md``)::

    dir/
      statekeel.json            marker: {"format": "statekeel-files", "layout": 1}
      .gitignore                ignores the two files below
      .lock                     flock(2) target: shared for reads, exclusive for writes
      .journal                  write-ahead journal: the batches since the last checkpoint
      data/
        session/support-42/meta.json          a record: pretty JSON, sorted keys
        session/support-42/history.jsonl      a log: one entry a line, append-only
        session/support-42/history.log.json   its header: bounds, trims, expiry
        session/support-42/state/ticket.json

Key components become folder and file names through a reversible, portable
escaping (:mod:`.names`): nothing a key holds — ``..``, ``/``, NUL, a
leading dot, ``:``, upper case, non-ASCII — can leave ``data/`` or collide.

Durability: an ``apply`` batch is durable when it returns and all-or-nothing
across crashes: one checksummed record appended to a write-ahead journal and
one ``fdatasync`` (:mod:`.journal`), then the files changed in place without
fsync (:mod:`.io`) until a checkpoint syncs them. Processes on one
host share the folder safely through ``flock``; it is advisory, so another
program editing the files while statekeel runs is not protected against.

Modules: :mod:`.backend` (the class: opening, locking, reads), :mod:`.txn` (one
batch, planned in memory), :mod:`.journal` (the write-ahead journal, replay,
checkpoints), :mod:`.io` (file changes and their undo),
:mod:`.tree` (where a key lives; walking keys in order), :mod:`.names` (escaping
key components), :mod:`.format` (what goes inside the files), :mod:`.logs`
(reading a log file), :mod:`.health` (integrity check and repair).
"""

from __future__ import annotations

from .backend import FORMAT, LAYOUT, MARKER, MIGRATIONS, FilesBackend

__all__ = ["FilesBackend", "FORMAT", "LAYOUT", "MARKER", "MIGRATIONS"]
