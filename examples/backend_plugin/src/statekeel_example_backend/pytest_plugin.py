"""Registers ``example`` with statekeel's conformance suite (loaded by pytest's ``pytest11`` entry point).

Run the suite with::

    pytest -p statekeel.testing.plugin --statekeel-backends=example --pyargs statekeel.testing.conformance
"""

from __future__ import annotations

from statekeel.testing import BackendContext, register_backend


def fresh_store_url(ctx: BackendContext) -> str:
    """A URL no other test uses, so every test starts from an empty store."""
    return f"example://conformance-{ctx.n}"


# The data lives in this process only: tests that share a store between processes skip it.
register_backend("example", fresh_store_url, process_local=True)
