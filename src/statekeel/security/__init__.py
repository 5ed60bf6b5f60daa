"""The secret guard: refuses or redacts credentials before they are persisted.

Encryption at rest and the keyring live in :mod:`statekeel.core` (they are part
of every record's write path); erasure and key rotation are features
(:mod:`statekeel.features.erasure`, :mod:`statekeel.features.rotation`).
"""

from .guard import GuardMode, SecretGuard, find_secrets

__all__ = ["GuardMode", "SecretGuard", "find_secrets"]
