"""Moving state between stores: export/import to readable files, copy between
backends, and online SQLite backup.

    from statekeel.portability import copy_store, export_store, import_store
    export_store("sqlite:///agent.db", "./support-42", session="support-42")
    import_store("./support-42", "postgresql://…")            # on_conflict="fail"
    copy_store("sqlite:///agent.db", "postgresql://…", progress=print)

Everything moves with the protocol's ``Load`` / ``LoadEntries`` operations, so
versions, timestamps, TTLs and log sequence numbers arrive unchanged, whatever
the two backends are; copies and imports are idempotent, resumable, and
verified against checksums before they report success.
"""

from ._walk import Progress, ProgressFn, Selection, selection
from .backup import BackupReport, backup_sqlite, restore_sqlite
from .copy import CopyReport, copy_store, verify_stores
from .errors import ImportConflictError, IncompleteExportError, NotAnExportError, VerificationError
from .export import ExportReport, ImportReport, export_store, import_store, read_manifest

__all__ = [
    "BackupReport",
    "CopyReport",
    "ExportReport",
    "ImportConflictError",
    "ImportReport",
    "IncompleteExportError",
    "NotAnExportError",
    "Progress",
    "ProgressFn",
    "Selection",
    "VerificationError",
    "backup_sqlite",
    "copy_store",
    "export_store",
    "import_store",
    "read_manifest",
    "restore_sqlite",
    "selection",
    "verify_stores",
]
