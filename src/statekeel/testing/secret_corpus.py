"""Labelled corpora for measuring the secret guard (used by tests and benchmarks).

* :func:`generated_secrets` — credentials in every format the guard claims to
  catch, generated at random (deterministic for a seed), each embedded the way it
  shows up in agent state: in a sentence (a tool's output, a pasted config), or
  as a field of a structured message (``{"password": "pw"}``, headers).
* :func:`ordinary_messages` — messages an agent stores that hold no credential:
  the docstrings of Python's standard library (real English prose about code),
  generated agent chatter full of ids, dates, paths and URLs, and messages built
  around the shapes a secret scanner confuses with keys — base64 payloads (image
  data URLs, attachments, wrapped MIME blocks, base64 JSON cursors), hex ids
  (32/40/64 characters, both cases), UUIDs, unsigned or non-JWT dotted ids, long
  numbers, digests, ids in URL paths, talk about passwords, and code that passes
  a password along without containing one.
"""

from __future__ import annotations

import ast
import base64
import json
import random
import string
import sysconfig
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["generated_secrets", "ordinary_messages", "ordinary_text", "measure"]

_ALNUM = string.ascii_letters + string.digits
_UPPER_DIGITS = string.ascii_uppercase + string.digits


def _rand(rnd: random.Random, alphabet: str, n: int) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def _b64url(rnd: random.Random, n: int) -> str:
    return base64.urlsafe_b64encode(rnd.randbytes(n)).decode().rstrip("=")


def _jwt(rnd: random.Random) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).decode().rstrip("=")
    claims = {"sub": str(rnd.randint(1, 10**9)), "iat": rnd.randint(10**9, 2 * 10**9)}
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{body}.{_b64url(rnd, 32)}"


def _pem(rnd: random.Random) -> str:
    kind = rnd.choice(["RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "])
    body = "\n".join(_rand(rnd, _ALNUM + "+/", 64) for _ in range(4))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


_FAMILIES: dict[str, Callable[[random.Random], str]] = {
    "aws_access_key": lambda r: r.choice(["AKIA", "ASIA"]) + _rand(r, _UPPER_DIGITS, 16),
    "openai_key": lambda r: "sk-" + r.choice(["", "proj-"]) + _rand(r, _ALNUM, 48),
    "anthropic_key": lambda r: "sk-ant-api03-" + _rand(r, _ALNUM + "_-", 93),
    "stripe_key": lambda r: r.choice(["sk_live_", "rk_live_", "sk_test_"]) + _rand(r, _ALNUM, 24),
    "github_token": lambda r: r.choice(["ghp_", "gho_", "ghs_"]) + _rand(r, _ALNUM, 36),
    "github_pat": lambda r: "github_pat_" + _rand(r, _ALNUM, 22) + "_" + _rand(r, _ALNUM, 59),
    "gitlab_token": lambda r: "glpat-" + _rand(r, _ALNUM + "_-", 20),
    "slack_token": lambda r: r.choice(["xoxb-", "xoxp-"]) + "-".join(_rand(r, string.digits, 12) for _ in range(2)) + "-" + _rand(r, _ALNUM, 24),
    "google_api_key": lambda r: "AIza" + _rand(r, _ALNUM + "_-", 35),
    "jwt": _jwt,
    "private_key": _pem,
    "connection_string": lambda r: (
        f"{r.choice(['postgresql', 'mysql', 'redis', 'mongodb+srv', 'amqp'])}://"
        f"{r.choice(['admin', 'app', 'svc_user'])}:{_rand(r, _ALNUM + '!$', r.randint(8, 24))}@"
        f"{r.choice(['db.internal', '10.0.0.5', 'cache.prod.example.com'])}:5432/main"
    ),
    "password_assignment": lambda r: (
        f"{r.choice(['password', 'PASSWORD', 'db_password', 'client_secret', 'api_key'])}"
        f"{r.choice(['=', ': ', ' = '])}{_rand(r, _ALNUM + '!@#%^&*', r.randint(10, 24))}"
    ),
    "random_token": lambda r: _rand(r, _ALNUM, r.randint(32, 64)),
    "base64_token": lambda r: base64.b64encode(r.randbytes(r.randint(24, 48))).decode(),
    "short_password_assignment": lambda r: r.choice([
        "password={}", "PASSWORD={}", "db_password = {}", '"password": "{}"', "--password={}", "passwd: {}",
        "https://example.com/login?user=bob&password={}", "PGPASSWORD='{}'", "apiKey: {}", "secret={}",
    ]).format(_rand(r, _ALNUM + "!@#%^&*", r.randint(1, 7))),
    "bearer_header": lambda r: "Authorization: Bearer " + _rand(r, _ALNUM + "-._~", r.randint(20, 64)),
    "aws_secret_key": lambda r: "aws_secret_access_key = " + _rand(r, _ALNUM + "+/", 40),
    "azure_storage_key": lambda r: (
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey="
        + base64.b64encode(r.randbytes(64)).decode() + ";EndpointSuffix=core.windows.net"
    ),
    "sendgrid_key": lambda r: "SG." + _rand(r, _ALNUM + "_-", 22) + "." + _rand(r, _ALNUM + "_-", 43),
    "npm_token": lambda r: "npm_" + _rand(r, _ALNUM, 36),
    "huggingface_token": lambda r: "hf_" + _rand(r, string.ascii_letters, 34),
    "slack_webhook": lambda r: (
        f"https://hooks.slack.com/services/T{_rand(r, _UPPER_DIGITS, 8)}/B{_rand(r, _UPPER_DIGITS, 10)}/{_rand(r, _ALNUM, 24)}"
    ),
    "telegram_bot_token": lambda r: f"{r.randint(10**8, 10**10 - 1)}:AA{_rand(r, _ALNUM + '_-', 33)}",
}

_CARRIERS = [
    "{}",
    "Here is the key you asked for: {}",
    "export TOKEN={}",
    "config loaded from .env -> {} (do not share)",
    "Tool output:\n{}\n(end)",
]

_FIELDS = ["password", "db_password", "passwd", "pwd", "apiKey", "X-Api-Key", "client_secret", "secret",
           "access_token", "refreshToken", "private_key", "passphrase", "AWS_SECRET_ACCESS_KEY"]

# Credentials as fields of a structured message: the field's name says what the value is.
_FIELD_FAMILIES: dict[str, Callable[[random.Random], Any]] = {
    "password_field_any_length": lambda r: {"role": "tool", "content": "created the user", "data": {
        "username": r.choice(["alice", "svc"]), r.choice(_FIELDS[:4]): _rand(r, _ALNUM + "!@#", r.randint(1, 24)),
    }},
    "key_field": lambda r: {"role": "assistant", "tool_calls": [{"name": "http_get", "arguments": {
        "url": "https://api.example.com/v1/items", "headers": {r.choice(_FIELDS[4:]): _rand(r, _ALNUM, r.randint(4, 48))},
    }}]},
    "authorization_field": lambda r: {"request": {"headers": {"Authorization": r.choice(["Basic ", "Bearer ", "Token "])
                                                  + base64.b64encode(r.randbytes(r.randint(6, 30))).decode()}}},
    "token_field": lambda r: {"session": {"token": _rand(r, _ALNUM, r.randint(16, 40)) + r.choice("0123456789")}},
}


def generated_secrets(n_per_family: int = 40, seed: int = 7) -> Iterator[tuple[str, Any]]:
    """``(family, message)`` pairs: ``n_per_family`` secrets of every family.

    A message is a text (a tool output, a pasted config) for the token families and
    a structured message (dicts and lists) for the field families.
    """
    rnd = random.Random(seed)
    for family, make in _FAMILIES.items():
        for _ in range(n_per_family):
            yield family, rnd.choice(_CARRIERS).format(make(rnd))
    for family, make_message in _FIELD_FAMILIES.items():
        for _ in range(n_per_family):
            yield family, make_message(rnd)


def _stdlib_docstrings(limit: int) -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    yield doc
                    limit -= 1
                    if limit == 0:
                        return


def _agent_chatter(n: int, seed: int) -> Iterator[str]:
    rnd = random.Random(seed)
    templates = [
        "Order {n} for customer {u} shipped on 2026-{m:02d}-{d:02d}; tracking number 1Z{t}.",
        "I looked at https://docs.example.com/api/v2/orders/{n}?page={m} and the refund policy says 30 days.",
        "Commit {sha} fixed the flaky test in src/statekeel/features/sessions.py line {n}.",
        "The request id was {uuid} and it took {n} ms; the token budget used was {m} tokens.",
        "Please reset your password from the account settings page, then sign in again.",
        "Plan: 1) fetch /var/log/app/{d}.log 2) grep ERROR 3) summarise the top {m} issues.",
        "Weather in Zürich: {m}°C, wind {d} km/h. Meeting moved to {d}:{m:02d}.",
        "User {u} asked about invoice INV-{n}-{m}: amount EUR {n}.{d:02d}, due in {m} days.",
        "sha256 of the upload is {sha256}; size {n} bytes; content-type image/png.",
        "def handle_{u}(event: dict[str, Any]) -> None:  # retries={m}, timeout={d}s",
    ]
    for _ in range(n):
        yield rnd.choice(templates).format(
            n=rnd.randint(1000, 999999), m=rnd.randint(1, 12), d=rnd.randint(1, 28),
            u=rnd.choice(["alice", "bob", "u-7", "cust_8812"]), t=_rand(rnd, _UPPER_DIGITS, 16),
            sha=_rand(rnd, "0123456789abcdef", 40), sha256=_rand(rnd, "0123456789abcdef", 64),
            uuid=uuid.UUID(int=rnd.getrandbits(128)),
        )


_HEX = "0123456789abcdef"


def _hex(r: random.Random, n: int) -> str:
    return _rand(r, _HEX, n)


def _b64_json(r: random.Random) -> str:
    cursor = {"offset": r.randint(0, 10**6), "sort": r.choice(["asc", "desc"]), "after": str(uuid.UUID(int=r.getrandbits(128)))}
    return base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")


def _wrapped(payload: str, width: int = 76) -> str:
    return "\n".join(payload[i : i + width] for i in range(0, len(payload), width))


def _attachment(r: random.Random) -> str:
    return base64.b64encode(r.randbytes(r.randint(200, 6000))).decode()


def _dotted_id(r: random.Random) -> str:
    """An unsigned JWT (alg none), a cursor of base64 JSON parts, a W3C trace parent and an OID, or a version."""
    kind = r.randrange(4)
    if kind == 0:
        return "debug token eyJhbGciOiJub25lIn0." + _b64_json(r) + ". (alg none, unsigned)"
    if kind == 1:
        return f"next page: {_b64_json(r)}.{_b64_json(r)}.{_b64url(r, 3)}{r.randint(10, 99)}"
    if kind == 2:
        return f"traceparent 00-{_hex(r, 32)}-{_hex(r, 16)}-01, oid 1.3.6.1.4.1.{r.randint(1, 60000)}.{r.randint(1, 99)}"
    return f"deployed v{r.randint(1, 9)}.{r.randint(0, 40)}.{r.randint(0, 9)}+build.{_hex(r, 7)} to eu-west-1"


# Ordinary messages built around what a scanner mistakes for keys; none holds a credential.
_SHAPES: dict[str, Callable[[random.Random], Any]] = {
    "image_data_url": lambda r: {"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/{r.choice(['png', 'jpeg', 'webp'])};base64,"
                                                  + base64.b64encode(b"\x89PNG\r\n\x1a\n" + r.randbytes(r.randint(60, 4000))).decode()}},
    ]},
    "base64_attachment": lambda r: {"role": "tool", "content": "fetched the invoice", "attachment": {
        "filename": f"invoice-{r.randint(1, 9999)}.pdf", "encoding": "base64", "data": _attachment(r)}},
    "mime_block": lambda r: "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + _wrapped(_attachment(r)),
    "hex_ids": lambda r: (
        f"sha256 {_hex(r, 64)} matched; commit {_hex(r, 40)}; md5 {_hex(r, 32).upper() if r.random() < 0.5 else _hex(r, 32)};"
        f" trace {_hex(r, 32)} span {_hex(r, 16)}"
    ),
    "uuids": lambda r: {"role": "tool", "content": f"created order {uuid.UUID(int=r.getrandbits(128))}",
                        "ids": [str(uuid.UUID(int=r.getrandbits(128))).upper() for _ in range(3)]},
    "dotted_ids": lambda r: _dotted_id(r),
    "long_numbers": lambda r: f"card ending {r.randint(1000, 9999)}, account {r.randint(10**30, 10**40)}, ts {r.randint(10**15, 10**16)}",
    "base64_cursor": lambda r: {"items": [r.randint(1, 100) for _ in range(3)], "next_cursor": _b64_json(r),
                                "next_token": _b64_json(r)},
    "digests": lambda r: (
        f'<script src="https://cdn.example.com/lib.{_hex(r, 8)}.js" integrity="sha384-'
        f'{base64.b64encode(r.randbytes(48)).decode()}" crossorigin="anonymous"></script>'
    ),
    "url_path_ids": lambda r: (
        f"Opened https://docs.google.com/spreadsheets/d/1{_rand(r, _ALNUM + '_-', 43)}/edit#gid={r.randint(0, 10**9)}"
    ),
    "password_talk": lambda r: r.choice([
        "Reset your password from the account settings page, then sign in again.",
        "password: the one from the onboarding email (never send it here)",
        "I changed the password policy: min length 12, rotate every 90 days.",
        "Set password = ${DB_PASSWORD} in the config and keep the value in the vault.",
        'The form posts {"username": "bob", "password": ""} when the field is empty.',
        "password: ******** (masked by the tool)",
    ]),
    "password_code": lambda r: r.choice([
        "conn = psycopg.connect(host=host, user=user, password=password)",
        'password = os.environ["DB_PASSWORD"]',
        "client = Client(api_key=settings.OPENAI_API_KEY, timeout=30)",
        "class Settings(BaseModel):\n    password: SecretStr\n    api_key: str",
        "PWD=/home/alice/project\nOLDPWD=/home/alice\nSHELL=/bin/bash",
        "password=getpass.getpass()",
    ]),
    "llm_tokens": lambda r: {"logprobs": [{"token": w, "logprob": -r.random()} for w in ["Hello", " world", "!"]],
                             "usage": {"prompt_tokens": r.randint(1, 4000), "total_tokens": r.randint(1, 8000)}},
}


def _shaped_messages(n_per_shape: int, seed: int) -> Iterator[Any]:
    rnd = random.Random(seed)
    for make in _SHAPES.values():
        for _ in range(n_per_shape):
            yield make(rnd)


def ordinary_text(n_docstrings: int = 3000, n_chatter: int = 2000, seed: int = 11) -> list[str]:
    """Texts with no credential in them: standard-library docstrings and generated agent chatter."""
    return [*_stdlib_docstrings(n_docstrings), *_agent_chatter(n_chatter, seed)]


def ordinary_messages(n_per_shape: int = 200, seed: int = 11) -> list[Any]:
    """Messages with no credential in them: :func:`ordinary_text` and ``n_per_shape`` of every tricky shape."""
    return [*ordinary_text(seed=seed), *_shaped_messages(n_per_shape, seed)]


def measure() -> dict[str, Any]:
    """Recall on :func:`generated_secrets` and false positives on :func:`ordinary_messages`."""
    from ..codec import Codec
    from ..errors import SecretDetectedError
    from ..security.guard import SecretGuard

    codec = Codec(guard=SecretGuard())

    def refused(message: Any) -> bool:
        try:
            codec.encode({"role": "tool", "content": message} if isinstance(message, str) else message, "message")
        except SecretDetectedError:
            return True
        return False

    secrets = list(generated_secrets())
    missed = Counter(family for family, message in secrets if not refused(message))
    ordinary = ordinary_text()
    shaped = list(_shaped_messages(200, 11))
    shapes = [name for name in _SHAPES for _ in range(200)]
    flagged = Counter(shape for shape, message in zip(shapes, shaped) if refused(message))
    false_positives = sum(refused(t) for t in ordinary) + sum(flagged.values())
    return {
        "secrets": len(secrets),
        "families": len(_FAMILIES) + len(_FIELD_FAMILIES),
        "recall": 1 - sum(missed.values()) / len(secrets),
        "missed_by_family": dict(missed),
        "ordinary_messages": len(ordinary) + len(shaped),
        "tricky_messages": len(shaped),
        "false_positive_rate": false_positives / (len(ordinary) + len(shaped)),
        "tricky_false_positive_rate": sum(flagged.values()) / len(shaped),
        "false_positives_by_shape": dict(flagged),
    }
