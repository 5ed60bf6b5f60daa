"""The one place where boto3/botocore errors become statekeel errors (:func:`map_error`)."""

from __future__ import annotations

from botocore import exceptions as bx

from ...errors import (
    ConfigurationError,
    InvalidInputError,
    MigrationRequiredError,
    StatekeelError,
    StoreError,
    UnavailableError,
    maybe_applied,
)

__all__ = ["map_error", "error_code", "RETRYABLE"]

RETRYABLE = frozenset({"None", "ConditionalCheckFailed", "TransactionConflict"})
"""Cancellation reasons of a TransactWriteItems that a fresh plan can retry (another writer got there first)."""
_TRANSIENT = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
    "LimitExceededException",
})  # fmt: skip
_CREDENTIALS = frozenset({
    "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "MissingAuthenticationTokenException", "ExpiredTokenException", "IncompleteSignature",
})  # fmt: skip
_NETWORK = (
    bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
    bx.ConnectTimeoutError, bx.HTTPClientError,
)  # fmt: skip


def error_code(exc: BaseException) -> str:
    """The DynamoDB error code of a ClientError (``""`` for anything else)."""
    if isinstance(exc, bx.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def map_error(exc: BaseException) -> StatekeelError | None:
    """The statekeel error for a boto3/botocore exception; None for anything else."""
    if isinstance(exc, UnicodeEncodeError):
        return InvalidInputError(
            f"a key, log name or codec holds text that is not valid Unicode ({exc}); DynamoDB stores UTF-8 "
            "strings only — remove the lone surrogate (e.g. text.encode('utf-8', 'replace').decode())"
        )
    if isinstance(exc, _NETWORK):
        return maybe_applied(UnavailableError(
            f"DynamoDB is unreachable or did not answer ({exc}); a write in flight may or may not have "
            "been applied — read back before retrying a write; the next call connects again by itself"
        ))  # fmt: skip
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ConfigurationError(
            f"no AWS credentials found ({exc}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(any values for a local server), AWS_PROFILE, or an instance role"
        )
    if isinstance(exc, bx.NoRegionError):
        return ConfigurationError("no AWS region given; add ?region=eu-west-1 to the URL or set AWS_DEFAULT_REGION")
    if isinstance(exc, bx.ClientError):
        return _client_error(exc)
    if isinstance(exc, bx.BotoCoreError):
        return StoreError(f"DynamoDB client error: {exc}")
    return None


def _client_error(exc: bx.ClientError) -> StatekeelError:
    code, text = error_code(exc), str(exc)
    if code in _TRANSIENT:
        return UnavailableError(f"DynamoDB is throttling or failing right now ({text}); retry in a moment")
    if code in _CREDENTIALS:
        return ConfigurationError(f"DynamoDB refused the credentials ({text}); check the AWS keys, profile or role")
    if code == "ResourceNotFoundException":
        return MigrationRequiredError(
            f"the DynamoDB table does not exist ({text}); run `statekeel migrate URL` or open the store "
            "with migrate=True to create it"
        )
    if code == "ValidationException" and "size" in text.lower():
        return InvalidInputError(
            f"DynamoDB refused a key or an item as too large ({text}); nothing was written. A key (with its "
            "log name) must stay under 1 KB and a record or entry under 400 KB: store large values elsewhere "
            "and keep a reference, or open the store with max_record_bytes= to refuse them up front"
        )
    return StoreError(f"DynamoDB error: {text}")
