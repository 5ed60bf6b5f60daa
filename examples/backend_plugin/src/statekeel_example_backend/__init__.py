"""``example://`` — a small third-party statekeel backend, packaged as a template.

Installing the distribution is enough for ``statekeel.open("example://NAME")``:
its ``statekeel.backends`` entry point names :class:`ExampleBackend`.
"""

from __future__ import annotations

from .backend import ExampleBackend

__all__ = ["ExampleBackend"]
