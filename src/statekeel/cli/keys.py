"""``statekeel keys …`` and ``statekeel erase``: key ids, rotation, encrypting a store, erasure.

Encryption is configured by environment: ``STATEKEEL_MASTER_KEY`` (one key, or
``NEW,OLD`` while rotating — each a bare base64 key or ``id:BASE64``) and optionally
``STATEKEEL_KEYSTORE_URL``.
"""

from __future__ import annotations

import click

from statekeel.core.keyring import MasterKeys, key_id
from statekeel.features.rotation import encrypt_store, reencrypt, rotate_master
from statekeel.store import open_for_maintenance

from ._output import CliState, console, counted, emit_json, encryption_from_env, json_option, store_from


@click.group("keys")
def group() -> None:
    """Encryption keys: show key ids, encrypt a store, rotate keys.

    Example: STATEKEEL_MASTER_KEY="$NEW_KEY,$OLD_KEY" statekeel keys rotate
    """


@group.command("id")
@click.argument("source", required=False, default="env:STATEKEEL_MASTER_KEY")
@json_option
def key_ids(source: str, as_json: bool) -> None:
    """Print the id of each master key in SOURCE (default: env:STATEKEEL_MASTER_KEY).

    SOURCE is read like Encryption(master_key=...): env:NAME, file:PATH, or the key text.
    The id is derived from the key, so it is the same whether the key is given bare or
    as LABEL:BASE64; error messages and the store's marker name keys by it.

    Example: statekeel keys id file:/run/keys/master
    """
    master = MasterKeys.from_any(source)
    rows = [{"id": key_id(raw), "label": label, "current": label == master.current}
            for label, raw in master.keys.items()]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        label = "" if row["label"] == row["id"] else f"  (labelled {row['label']})"
        click.echo(f"{row['id']}{label}{'  current: wraps new data keys' if row['current'] else ''}")


@group.command("encrypt")
@click.argument("url", required=False)
@json_option
@click.pass_context
def encrypt_cmd(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """Encrypt a plaintext store in place with the key in STATEKEEL_MASTER_KEY (resumable, verified).

    Every record and history entry is encrypted and checked to read back unchanged; the
    store is then marked encrypted, so it is refused without the key and plaintext put
    into it later is refused as planted. Stop processes running without the key first.
    Items already encrypted are skipped: after a crash, run it again. URL defaults to --url.

    Example: STATEKEEL_MASTER_KEY=BASE64KEY statekeel keys encrypt sqlite:///agent.db
    """
    encryption = encryption_from_env()
    if encryption is None:
        raise click.ClickException(
            "set STATEKEEL_MASTER_KEY to the key to encrypt with (make one with: python -c "
            "\"import os,base64;print(base64.b64encode(os.urandom(32)).decode())\")"
        )
    store = open_for_maintenance(url or ctx.ensure_object(CliState).url, encryption=encryption,
                                 migrate=True, mark=False)
    ctx.call_on_close(store.close)
    result = encrypt_store(store)
    if as_json:
        emit_json({"records": result.records, "entries": result.entries, "verified": result.verified})
    else:
        console().print(
            f"encrypted {counted(result.records, 'record')} and {counted(result.entries, 'entry', 'entries')}; "
            f"verified {counted(result.verified, 'encrypted item')}; the store is marked encrypted"
        )


@group.command("rotate")
@json_option
@click.pass_context
def rotate(ctx: click.Context, as_json: bool) -> None:
    """Re-wrap every data key under the first master key in STATEKEEL_MASTER_KEY.

    The data itself is not rewritten; a rerun continues where an interrupted one stopped.

    Example: STATEKEEL_MASTER_KEY="$NEW_KEY,$OLD_KEY" statekeel keys rotate
    """
    changed = rotate_master(store_from(ctx))
    if as_json:
        emit_json({"rewrapped": changed})
    else:
        console().print(f"re-wrapped {counted(changed, 'data key')} under the current master key")


@group.command("reencrypt")
@json_option
@click.pass_context
def reencrypt_cmd(ctx: click.Context, as_json: bool) -> None:
    """Move every record and history entry to a fresh data key (resumable).

    Example: statekeel --url sqlite:///agent.db keys reencrypt
    """
    result = reencrypt(store_from(ctx))
    if as_json:
        emit_json({"partitions": result.partitions, "records": result.records, "entries": result.entries,
                   "plaintext_encrypted": result.plaintext})
        return
    console().print(
        f"re-encrypted {counted(result.records, 'record')} and {counted(result.entries, 'entry', 'entries')} "
        f"in {counted(result.partitions, 'partition')}"
    )
    if result.plaintext:
        shown = ", ".join(result.plaintext[:10]) + (" …" if len(result.plaintext) > 10 else "")
        console().print(f"encrypted {counted(len(result.plaintext), 'item')} found in plaintext: {shown}")


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
        console().print(f"erased {counted(done.partitions, 'partition')} of the subject: {shred}; record {done.id}")
