"""What counts as a secret: the detectors behind :mod:`statekeel.security.guard`.

Two questions are answered here, both on plain strings and without I/O:

* :func:`find_secrets` — where in a text is a credential? Known token formats
  (AWS, Google, ``sk-…``, Stripe, GitHub, GitLab, Slack, SendGrid, npm, PyPI,
  Hugging Face, Telegram, webhook URLs), private key blocks, signed JWTs, bearer
  headers, connection strings with a password, ``password=…`` assignments, and
  random-looking tokens;
* :func:`field_finding` — is ``{"password": value}`` storing a credential?

The rules for passwords (docs/security.md states the same): a password-like
field or assignment is refused whatever the length of its value; only an empty
value and obvious placeholders pass (a mask such as ``***``, ``<redacted>``,
``[REDACTED:…]``, ``${PASSWORD}``, ``$PASSWORD``, ``{{ password }}``, ``%(pw)s``
or the bare word ``password``). In text, an assignment's value may also be code
(``password=self.password``, ``password=os.environ["PW"]``, ``password: str``),
and ``password: the one you chose`` (an unquoted colon followed by more words on
the line) is prose.

Things that look random but are not secrets are not flagged: hex ids (no
upper case), UUIDs, long numbers, base64 payloads (data URLs, blocks of base64
lines, tokens over 256 characters, base64 that decodes to text), digests such
as ``sha384-…``, ids in URL paths, and dotted ids whose first part is not a JWT
header.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "field_finding", "find_secrets", "fast_search", "SHORTEST"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One suspected secret inside a string."""

    kind: str
    """Which detector matched, e.g. ``aws_access_key``."""
    start: int
    """Offset of the match in the string."""
    end: int
    """Offset just past the match."""


# Names that hold a credential, in a field (``{"db_password": …}``) or an assignment (``API_KEY=…``).
_SECRET_NAMES = (
    r"password|passwd|passphrase|pwd|secret|client[_\-]?secret|api[_\-]?key|apikey"
    r"|(?:secret|private|access|account|signing|encryption|master)[_\-]?key"
    r"|(?:access|auth|refresh|id|session|bearer|api|oauth)[_\-]?token"
)
_VALUE_END = r"\s\"'\\`"
_PATTERNS: dict[str, str] = {
    "aws_access_key": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "google_api_key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "api_key": r"\bsk-(?:proj-|ant-[a-z0-9]{2,8}-|live-|test-)?[A-Za-z0-9_\-]{20,}",
    "stripe_key": r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
    "gitlab_token": r"\bglpat-[A-Za-z0-9_\-]{20,}",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "webhook_url": r"\bhooks\.slack\.com/services/[A-Za-z0-9/]{20,}|\bdiscord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]{20,}",
    "sendgrid_key": r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    "npm_token": r"\bnpm_[A-Za-z0-9]{36}\b",
    "pypi_token": r"\bpypi-AgE[A-Za-z0-9_\-]{50,}",
    "huggingface_token": r"\bhf_[A-Za-z0-9]{30,}\b",
    "telegram_bot_token": r"\b\d{8,10}:AA[A-Za-z0-9_\-]{32,}",
    "private_key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    "jwt": r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    "bearer_token": r"(?:Bearer|bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*",
    "connection_string": (
        r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^\s:/@\"\\]{0,64}:(?P<cs_value>[^\s@/\"\\]+)@[^\s\"\\]+"
    ),
    "password_assignment": (
        rf"(?:\b|(?<=_)|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z]{{3}}))(?P<pa_name>(?i:{_SECRET_NAMES}))\b(?:\\?[\"'])?[ \t]*(?P<pa_op>:=|=>|[:=])[ \t]*"
        rf"(?:(?P<pa_quote>\\?[\"'`])(?P<pa_quoted>[^\"'`\\\n]*)|(?P<pa_value>[^{_VALUE_END}]+))"
    ),
    "high_entropy_token": r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{32,}={0,2}(?![A-Za-z0-9+/_\-])",
}
# Python's re cannot skip ahead through an alternation: one regex of all the detectors costs
# ~0.3 µs a character at every position. So each detector runs on its own, and only when the text
# holds a literal every match of it contains (a substring test); the generic random token has none
# and always runs. The detectors without a literal prefix are gated by words they need.
_LITERALS: dict[str, tuple[str, ...] | None] = {
    "aws_access_key": ("AKIA", "ASIA", "ABIA", "ACCA"),
    "google_api_key": ("AIza",),
    "api_key": ("sk-",),
    "stripe_key": ("_live_", "_test_"),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "gitlab_token": ("glpat-",),
    "slack_token": ("xox",),
    "webhook_url": ("hooks.slack.com/services/", "/api/webhooks/"),
    "sendgrid_key": ("SG.",),
    "npm_token": ("npm_",),
    "pypi_token": ("pypi-AgE",),
    "huggingface_token": ("hf_",),
    "telegram_bot_token": (":AA",),
    "private_key": ("-----BEGIN ",),
    "jwt": ("eyJ",),
    "high_entropy_token": None,
}
_GATES: dict[str, tuple[str, ...]] = {
    "password_assignment": ("pass", "pwd", "secret", "key", "token"),
    "bearer_token": ("earer",),
    "connection_string": ("://",),
}
_SINGLE = tuple((_LITERALS[k], re.compile(f"(?P<{k}>{v})")) for k, v in _PATTERNS.items() if k not in _GATES)
"""Each ungated detector, in priority order, with the literals that gate it (None: always run)."""
_GATED = tuple((words, re.compile(f"(?P<{k}>{_PATTERNS[k]})")) for k, words in _GATES.items())
_PASSWORD = _GATED[0][1]
_NAME_REACH = 16
"""How far before its word ("pass", "key", …) a secret's name starts: ``encryption_key`` 11."""

# The fast path: one RE2 automaton (linear time) over a superset of the
# detectors — every detector's match contains one of these pieces. Only when it
# fires are strings walked and the exact detectors (Python's re) applied.
# No counted repetitions here: they multiply RE2's DFA states, and on text it
# has not seen before the scan then costs ~60 µs per KB instead of ~3 µs.
_FAST_PATTERN = (
    r"AKIA|ASIA|ABIA|ACCA|AIza|sk-|sk_|rk_|pk_|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|-----BEGIN|://"
    r"|SG\.|npm_|pypi-|hf_|hooks\.slack|webhooks/|[0-9]:AA|[Bb]earer"
    r"|eyJ[A-Za-z0-9_\-]+\."
    r"|(?i:pass(?:w|phrase)|secret|token|api.?key|(?:private|access|account|signing|encryption|master).?key)"
    r"|(?i:pwd)[^A-Za-z]|(?i:authori[sz]ation|credential)"
    # random tokens mix upper case and digits; floats, hex ids and UUIDs have no upper case
    r"|[A-Z][A-Za-z0-9+/_\-]*[0-9]|[0-9][A-Za-z0-9+/_\-]*[A-Z]"
)
SHORTEST = 4
"""No detector matches fewer characters (``pw=x`` is not a detector; ``pwd=x`` is)."""


def _fast_search() -> Any:
    """``search(data) -> bool``: RE2's automaton called directly (its Python wrapper
    costs more than the scan), or Python's re where google-re2 is missing."""
    try:
        import re2  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - google-re2 is a dependency
        pattern = re.compile(_FAST_PATTERN.encode())
        return lambda data: pattern.search(data) is not None
    automaton = re2.compile(_FAST_PATTERN.encode())._regexp
    unanchored = re2._re2.RE2.Anchor.UNANCHORED
    return lambda data: automaton.Match(unanchored, data, 0, len(data))[0][0] != -1


fast_search = _fast_search()
"""``fast_search(data: bytes) -> bool``: could ``data`` hold anything :func:`find_secrets` finds?"""

# -- placeholders and code: values of a password field or assignment that are not a password ----
_PLACEHOLDER = re.compile(
    r"""(?x)^(?:
        \s* | [*•●·\#]+ | x{3,} | X{3,}            # empty, or a mask: ***, xxxx, ••••
      | <[\w\s:.\-/]*> | \[[\w\s:.\-/]*\]        # <redacted>, <your password>, [REDACTED:secret_field]
      | \$\{[^{}]*\} | \$[A-Z_][A-Z0-9_]* | \{\{[^{}]*\}\} | \{\w*\} | %\(\w+\)s   # template / env references
      | (?i:redacted|hidden|none|null|nil|undefined|password|passwd|pass|pwd|secret)
    )$"""
)
_CODE_REFERENCE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:\(|\[)"  # getpass(), os.environ["PW"], cfg.get("pw")
    rf"|^(?:[A-Za-z_]\w*\.)+\w*(?i:{_SECRET_NAMES})\w*$"  # self.password, settings.DB_PASSWORD
    r"|^(?:[A-Za-z_]\w*\.)*(?:str|bytes|string|SecretStr|SecretBytes|Optional|int|Any)(?:\[\S*\])?$"  # password: str
)


_PLAIN_WORD = re.compile(r"^[A-Za-z]?[a-z]+[.,;:]?$")


def _eol(text: str, pos: int) -> int:
    """Index of the newline ending the line at ``pos`` (or the end of ``text``)."""
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def is_placeholder(value: str) -> bool:
    """Whether a password's value is empty or an obvious stand-in rather than a password."""
    return _PLACEHOLDER.match(value.strip()) is not None


def _is_working_dir(name: str, value: str) -> bool:
    """``PWD=/home/alice`` (a shell's environment) is a directory, not a password."""
    return name.lower().endswith("pwd") and value.startswith(("/", "~"))


def _assignment_is_secret(m: re.Match[str], text: str) -> bool:
    """``password=…`` with a real value: not a placeholder, not code, not prose."""
    if m.group("pa_quote") is not None:
        return not is_placeholder(m.group("pa_quoted"))
    raw = m.group("pa_value")
    value = raw.rstrip(",;)]}>")
    if is_placeholder(raw) or is_placeholder(value) or _CODE_REFERENCE.match(value) or _is_working_dir(m.group("pa_name"), value):
        return False
    if m.group("pa_op") == ":" and _PLAIN_WORD.match(value):  # "password: the one you chose" is prose
        rest = text[m.end() : _eol(text, m.end())].split("#", 1)[0]  # a trailing comment is not prose
        return not re.search(r"\w", rest)
    return True


# -- random-looking tokens that are payloads or ids, not keys ------------------------------------
_ENTROPY_BITS = 4.2
_LONGEST_KEY = 256  # a generic token longer than this is an encoded payload (attachment, image)
_DATA_URL = re.compile(r"data:[\w.+\-/]*(?:;[\w.+\-]+=[\w.+\-]+)*;base64,$")
_DIGEST_PREFIX = re.compile(r"(?i)(?:sha(?:1|224|256|384|512)|md5)-")  # sha384-<base64> (subresource integrity)
_DIGEST_LABEL = re.compile(r"(?i)(?:sha-?\d+|md5|digest)[=:]\s*$")  # Digest: sha-256=<base64>
_B64_LINE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def _entropy(token: str) -> float:
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


def _looks_random(token: str) -> bool:
    classes = sum(
        (any(c.isupper() for c in token), any(c.islower() for c in token), sum(c.isdigit() for c in token) >= 2)
    )
    return classes == 3 and _entropy(token) >= _ENTROPY_BITS


def _decodes_to_text(token: str) -> bool:
    """Base64 of text (a JSON cursor, an encoded note) is a payload; a random key decodes to noise."""
    padded = token + "=" * (-len(token) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in raw)
    return len(raw) >= 16 and printable >= 0.95 * len(raw)


def _in_base64_block(text: str, start: int, end: int) -> bool:
    """A line of a wrapped base64 block (a MIME attachment): the line above or below is base64 too."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = _eol(text, end)
    if text[line_start:line_end].strip() != text[start:end]:
        return False
    above = text[text.rfind("\n", 0, line_start - 1) + 1 : line_start - 1] if line_start else ""
    below = text[line_end + 1 : _eol(text, line_end + 1)] if line_end < len(text) else ""
    return any(_B64_LINE.fullmatch(line.strip()) is not None for line in (above, below))


def _in_url_path(text: str, start: int) -> bool:
    """An id in a URL's path (``/file/d/<id>/view``), not in its query string or user info."""
    word_start = max(text.rfind(c, 0, start) for c in " \t\n\"'(<[") + 1
    prefix = text[word_start:start]
    return "://" in prefix and "@" not in prefix and "?" not in prefix


def _is_payload(token: str, text: str, start: int) -> bool:
    """A random-looking token that is an encoded payload, a digest or an id in a URL's path."""
    return (
        _DATA_URL.search(text, max(0, start - 100), start) is not None
        or _DIGEST_PREFIX.match(token) is not None
        or _DIGEST_LABEL.search(text, max(0, start - 12), start) is not None
        or _in_url_path(text, start)
        or _decodes_to_text(token.rstrip("="))
    )


def _is_random_key(token: str, text: str, start: int, end: int) -> bool:
    """A high-entropy token that is a key: cheap tests first (most candidates are payload lines)."""
    if len(token) > _LONGEST_KEY or _in_base64_block(text, start, end):
        return False
    return _looks_random(token.rstrip("=")) and not _is_payload(token, text, start)


def _is_jwt(token: str) -> bool:
    """A signed JWT: its first part is base64 JSON naming an ``alg``."""
    header = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except (binascii.Error, ValueError):
        return False
    return b'"alg"' in decoded


def _keep(m: re.Match[str], text: str) -> bool:
    """The exact rule after a detector's pattern matched: is it a secret after all?"""
    kind = m.lastgroup
    token = m.group()
    if kind == "high_entropy_token":
        return _is_random_key(token, text, m.start(), m.end())
    if kind == "password_assignment":
        return _assignment_is_secret(m, text)
    if kind == "connection_string":
        return not is_placeholder(m.group("cs_value"))
    if kind == "jwt":
        return _is_jwt(token)
    return True


def _matches(text: str) -> Iterator[re.Match[str]]:
    """Every detector's candidate matches, detector by detector (each only where its literals or
    words occur)."""
    for literals, pattern in _SINGLE:
        if literals is None or any(w in text for w in literals):
            yield from pattern.finditer(text)
    lowered = text.lower()
    for words, pattern in _GATED:
        if any(w in lowered for w in words):
            if pattern is _PASSWORD and text.isascii():  # (?i) folds some non-ASCII letters to ASCII
                yield from _password_matches(text, lowered)
            else:
                yield from pattern.finditer(text)


def _password_matches(text: str, lowered: str) -> Iterator[re.Match[str]]:
    """``password_assignment``'s ``finditer``, tried only where a secret's name can start: a few
    characters before each of its words (the pattern opens with look-behinds and a case-insensitive
    alternation, which Python's re tries at every position: ~0.25 µs a character). ``text`` is ASCII
    and ``lowered`` its ``lower()`` (the same indices)."""
    starts: set[int] = set()
    for word in _GATES["password_assignment"]:
        at = lowered.find(word)
        while at >= 0:
            starts.update(range(max(0, at - _NAME_REACH), at + 1))
            at = lowered.find(word, at + 1)
    end = 0
    for start in sorted(starts):
        if start >= end and (m := _PASSWORD.match(text, start)) is not None:
            end = m.end()
            yield m


def find_secrets(text: str) -> list[Finding]:
    """Every suspected secret in ``text``, in order; of two that overlap, the one starting first (of
    two starting together, the detector listed first)."""
    found: list[Finding] = []
    for m in sorted((m for m in _matches(text) if _keep(m, text)), key=lambda m: m.start()):
        if not found or m.start() >= found[-1].end:
            found.append(Finding(m.lastgroup or "secret", m.start(), m.end()))
    return found


# -- fields ------------------------------------------------------------------------------------
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SECRET_FIELD = re.compile(rf"(?i)^(?:[a-z0-9]+[_\-. ])*(?:{_SECRET_NAMES}|authori[sz]ation|credentials?)$")
_TOKEN_FIELD = re.compile(r"(?i)^(?:[a-z0-9]+[_\-. ])*token$")
_NOT_SECRET_TOKEN = re.compile(r"(?i)^(?:next|prev|previous|page|next[_\-. ]page|continuation|pagination|sync|resume)[_\-. ]token$")


def field_finding(key: str, value: str) -> Finding | None:
    """A dict entry whose key names a credential, e.g. ``{"password": "pw"}``.

    Password-like keys (``password``, ``db_password``, ``apiKey``, ``client_secret``,
    ``access_token``, ``Authorization`` …) are refused whatever the length of the
    value, unless it is a placeholder. A bare ``token`` (or ``csrf_token``…) is
    ambiguous — LLM tokens, pagination cursors — so it is refused only when the
    value is one word of at least 16 characters mixing letters and digits.
    """
    name = _CAMEL.sub("_", key)
    if _SECRET_FIELD.match(name):
        secret = not is_placeholder(value) and not _is_working_dir(name, value)
    elif _TOKEN_FIELD.match(name) and not _NOT_SECRET_TOKEN.match(name):
        word = value.strip()
        secret = len(word) >= 16 and not re.search(r"\s", word) and re.search(r"\d", word) is not None
        secret = secret and re.search(r"[A-Za-z]", word) is not None
    else:
        return None
    return Finding("secret_field", 0, len(value)) if secret else None
