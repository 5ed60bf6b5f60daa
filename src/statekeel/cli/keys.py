"""``statekeel keys …`` and ``statekeel erase``: key rotation and erasure of a data subject.

Encryption is configured by environment: ``STATEKEEL_MASTER_KEY`` (one key, or
``new-id:BASE64,old-id:BASE64`` while rotating) and optionally
``STATEKEEL_KEYSTORE_URL``.
"""

from __future__ import annotations

import click

from statekeel.features.rotation import reencrypt, rotate_master

from ._output import console, emit_json, json_option, store_from


@click.group("keys")
def group() -> None:
    """Rotate encryption keys.

    Example: STATEKEEL_MASTER_KEY=new:NEWKEY,old:OLDKEY statekeel keys rotate
    """


@group.command("rotate")
@json_option
@click.pass_context
def rotate(ctx: click.Context, as_json: bool) -> None:
    """Re-wrap every data key under the first master key in STATEKEEL_MASTER_KEY.

    The data itself is not rewritten; a rerun continues where an interrupted one stopped.

    Example: STATEKEEL_MASTER_KEY=k2:BASE64NEW,k1:BASE64OLD statekeel keys rotate
    """
    changed = rotate_master(store_from(ctx))
    if as_json:
        emit_json({"rewrapped": changed})
    else:
        console().print(f"re-wrapped {changed} data key(s) under the current master key")


@group.command("reencrypt")
@json_option
@click.pass_context
def reencrypt_cmd(ctx: click.Context, as_json: bool) -> None:
    """Move every record and history entry to a fresh data key (resumable).

    Example: statekeel --url sqlite:///agent.db keys reencrypt
    """
    result = reencrypt(store_from(ctx))
    if as_json:
        emit_json({"partitions": result.partitions, "records": result.records, "entries": result.entries})
    else:
        console().print(
            f"re-encrypted {result.records} record(s) and {result.entries} entr(y/ies) "
            f"in {result.partitions} partition(s)"
        )


@click.command("erase")
@click.option("--subject", required=True, help="The data subject (user id) to erase.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def erase(ctx: click.Context, subject: str, yes: bool, as_json: bool) -> None:
    """Erase every record of one data subject (right to be forgotten).

    With encryption on, the subject's data keys are destroyed, so copies in
    WAL/AOF files and backups can no longer be decrypted either.

    Example: statekeel erase --subject u-7 --yes
    """
    if not yes and not click.confirm(f"Erase all data of subject {subject!r}? This cannot be undone"):
        raise click.Abort()
    done = store_from(ctx).erase(subject)
    if as_json:
        emit_json({"erasure": done.id, "at": done.at, "partitions": done.partitions, "crypto_shredded": done.crypto_shredded})
    else:
        shred = "keys destroyed" if done.crypto_shredded else "deleted (no encryption: backups still hold it)"
        console().print(f"erased {done.partitions} partition(s) of the subject: {shred}; record {done.id}")
