"""What the file system's errors mean for a ``file://`` store, as statekeel's errors."""

from __future__ import annotations

import errno

from ...errors import ConfigurationError, StatekeelError, StoreError

__all__ = ["map_error"]


def map_error(exc: BaseException) -> StatekeelError | None:
    if not isinstance(exc, OSError):
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"the disk is full{where}; free space, then retry (nothing was half-written)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ConfigurationError(f"cannot write the store folder{where}: {exc.strerror}; check its permissions")
    if exc.errno == errno.ENOLCK:
        return ConfigurationError(
            f"the file system refuses flock(){where}; keep file:// stores on a local disk, not NFS"
        )
    return StoreError(f"file system error{where}: {exc.strerror or exc}; run `statekeel doctor` on the store")
