"""Security: encryption at rest, erasure, the secret guard."""

from .encryption import AesGcmTransform, Encryption
from .erasure import Erasure, erase_subject
from .guard import SecretGuard, find_secrets
from .keyring import Keyring, MasterKeys

__all__ = ["AesGcmTransform", "Encryption", "Erasure", "Keyring", "MasterKeys", "SecretGuard", "erase_subject", "find_secrets"]
