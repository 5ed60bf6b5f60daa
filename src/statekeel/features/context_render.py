"""The working set's records, its token counting and its Markdown: no I/O here.

:mod:`statekeel.features.context` decides what goes in; this module says what an item looks
like and what it costs. The cost of an item is the token count of exactly the text
:meth:`WorkingSet.render` prints for it (its Markdown line, newline included), and a
section's heading is paid by its first item, so the rendered document never counts more
tokens than the budget with the default approximation (and, for a real tokenizer, no more
than the sum of its pieces: BPE merges across a line break are rare and only lower it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from ..errors import InvalidInputError

__all__ = [
    "APPROXIMATION",
    "SECTIONS",
    "ContextItem",
    "Dropped",
    "TokenCounter",
    "Tokenizer",
    "WorkingSet",
    "as_text",
    "bullet",
    "heading",
    "message_role",
]

SECTIONS: Final[tuple[tuple[str, str], ...]] = (
    ("standing_orders", "Standing orders"),
    ("profile", "User profile"),
    ("decisions", "Open decisions (no outcome recorded yet)"),
    ("runs", "Runs waiting for input"),
    ("memories", "Relevant memories"),
    ("summaries", "Earlier conversation (summaries)"),
    ("messages", "Recent messages"),
)
"""Section name -> heading, in the order the document shows them."""
_TITLES: Final = dict(SECTIONS)
_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
APPROXIMATION: Final = "approx: ceil(characters / 4)"


@runtime_checkable
class Tokenizer(Protocol):
    """What ``tokenizer=`` takes: ``tiktoken.get_encoding(...)`` or any object with ``encode``."""

    def encode(self, text: str) -> Sequence[Any]: ...


class TokenCounter:
    """Counts tokens with a tokenizer, or approximates them as ``ceil(len(text) / 4)``.

    ``None`` uses tiktoken's ``cl100k_base`` when tiktoken is installed and its encoding
    loads, the approximation otherwise; :attr:`name` says which one counted.
    """

    def __init__(self, tokenizer: Tokenizer | None) -> None:
        if tokenizer is None:
            tokenizer = _tiktoken()
        if isinstance(tokenizer, (str, bytes)) or (
                tokenizer is not None and not callable(getattr(tokenizer, "encode", None))):
            raise InvalidInputError(
                f"tokenizer= takes a tokenizer object with an encode(str) -> list method (e.g. "
                f"tiktoken.get_encoding('cl100k_base'), not its name), got {type(tokenizer).__name__}"
            )
        self._encode: Callable[[str], Sequence[Any]] | None = None
        self.name = APPROXIMATION
        if tokenizer is not None:  # tiktoken's encode refuses special-token text; encode_ordinary does not
            self._encode = getattr(tokenizer, "encode_ordinary", None) or tokenizer.encode
            named = getattr(tokenizer, "name", None)  # tiktoken's encodings have one: "cl100k_base"
            self.name = f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}" + (
                f" {named}" if isinstance(named, str) else "")

    def __call__(self, text: str) -> int:
        if self._encode is None:
            return math.ceil(len(text) / 4)
        tokens = self._encode(text)
        if not hasattr(tokens, "__len__"):
            raise InvalidInputError(f"tokenizer.encode() must return a list of tokens, got {type(tokens).__name__}")
        return len(tokens)


_TIKTOKEN: list[Tokenizer | None] = []


def _tiktoken() -> Tokenizer | None:
    """tiktoken's cl100k_base if tiktoken is installed and the encoding loads (once per process)."""
    if not _TIKTOKEN:
        try:
            import tiktoken  # type: ignore[import-not-found, unused-ignore]

            _TIKTOKEN.append(tiktoken.get_encoding("cl100k_base"))
        except Exception:  # not installed, or its encoding file cannot be read or fetched
            _TIKTOKEN.append(None)
    return _TIKTOKEN[0]


@dataclass(frozen=True, slots=True)
class ContextItem:
    """One thing the working set carries."""

    section: str
    """``standing_orders``, ``profile``, ``decisions``, ``runs``, ``memories``, ``summaries`` or ``messages``."""
    name: str
    """What it is: a state key, a decision or run id, ``#12`` (a message), ``#1-#500`` (a summary)."""
    text: str
    """Its line in :meth:`WorkingSet.render` (Markdown, without the list marker)."""
    tokens: int
    """What it costs: the tokens of its rendered line (plus its section's heading, for the first)."""
    value: Any = field(default=None, compare=False)
    """The value behind it: a message as appended, a state value, a Decision, a RunInfo, a Summary, a hit."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """Something left out of the working set, and why."""

    section: str
    """The section it belonged to."""
    item: str
    """What it is (as :attr:`ContextItem.name`; a range for messages left out together)."""
    tokens: int | None
    """What it would have cost; None when it was not read (the budget was spent before it)."""
    reason: str
    """Why, in words."""


@dataclass(frozen=True)
class WorkingSet:
    """What a new context window needs, within a token budget: ``s.context(budget=...)``."""

    session: str
    """The session it was built for."""
    budget: int
    """The token budget it had."""
    tokens: int
    """The tokens it uses (<= budget)."""
    tokenizer: str
    """How tokens were counted (a tokenizer's type, or the approximation)."""
    title: str
    """The document's first line."""
    items: tuple[ContextItem, ...]
    """Everything kept, in document order (sections as :data:`SECTIONS`, messages oldest first)."""
    dropped: tuple[Dropped, ...]
    """Everything left out for the budget (or because nothing covers it), with the reason."""

    def section(self, name: str) -> list[ContextItem]:
        """The kept items of one section, in document order."""
        if name not in _TITLES:
            raise InvalidInputError(f"no section {name!r}; sections are {', '.join(_TITLES)}")
        return [i for i in self.items if i.section == name]

    def render(self, *, sections: Sequence[str] | None = None) -> str:
        """The boot document as Markdown (``sections``: only these, e.g. all but ``messages``)."""
        parts = [self.title]
        for name, _ in SECTIONS:
            items = self.section(name)
            if items and (sections is None or name in sections):
                parts.append(heading(name) + "".join(bullet(i.text) for i in items))
        return "".join(parts)

    def to_messages(self) -> list[dict[str, Any]]:
        """Chat messages for a model call: one system message holding every section but the
        recent messages, then those messages as appended (a ``{"role", "content"}`` mapping is
        passed through as is; any other value becomes a user message holding its text)."""
        system = self.render(sections=[n for n, _ in SECTIONS if n != "messages"])
        out: list[dict[str, Any]] = [{"role": "system", "content": system}]
        for item in self.section("messages"):
            value = item.value
            if isinstance(value, Mapping) and message_role(value) is not None:
                out.append(dict(value))
            else:
                out.append({"role": "user", "content": as_text(value)})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``: the document, the items and the dropped report."""
        return {
            "session": self.session, "budget": self.budget, "tokens": self.tokens, "tokenizer": self.tokenizer,
            "markdown": self.render(),
            "items": [{"section": i.section, "name": i.name, "text": i.text, "tokens": i.tokens} for i in self.items],
            "dropped": [{"section": d.section, "item": d.item, "tokens": d.tokens, "reason": d.reason}
                        for d in self.dropped],
        }


def heading(section: str) -> str:
    """A section's heading, as rendered (paid by the section's first item)."""
    return f"\n## {_TITLES[section]}\n\n"


def bullet(text: str) -> str:
    """One list item; continuation lines are indented so they stay in the item."""
    return "- " + text.replace("\n", "\n  ") + "\n"


def message_role(value: Mapping[Any, Any]) -> str | None:
    """The chat role of a stored message (``{"role": "user", ...}``), or None if it has none."""
    role = value.get("role")
    return role if isinstance(role, str) and role in _ROLES else None


def as_text(value: Any) -> str:
    """A value as the model should read it: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
