"""Labelled corpora for measuring the secret guard (used by tests and benchmarks).

* :func:`generated_secrets` — credentials in every format the guard claims to
  catch, generated at random (deterministic for a seed), each embedded in a
  sentence the way it shows up in agent state (a tool's output, a pasted config).
* :func:`ordinary_text` — text an agent stores that holds no credential: the
  docstrings of Python's standard library (real English prose about code) and
  generated agent chatter full of ids, dates, paths, URLs, hashes and UUIDs.
"""

from __future__ import annotations

import ast
import base64
import json
import random
import string
import sysconfig
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["generated_secrets", "ordinary_text", "measure"]

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
}

_CARRIERS = [
    "{}",
    "Here is the key you asked for: {}",
    "export TOKEN={}",
    "config loaded from .env -> {} (do not share)",
    "Tool output:\n{}\n(end)",
]


def generated_secrets(n_per_family: int = 80, seed: int = 7) -> Iterator[tuple[str, str]]:
    """``(family, text)`` pairs: ``n_per_family`` secrets of every family (15 families)."""
    rnd = random.Random(seed)
    for family, make in _FAMILIES.items():
        for _ in range(n_per_family):
            yield family, rnd.choice(_CARRIERS).format(make(rnd))


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


def ordinary_text(n_docstrings: int = 3000, n_chatter: int = 2000, seed: int = 11) -> list[str]:
    """Texts with no credential in them."""
    return [*_stdlib_docstrings(n_docstrings), *_agent_chatter(n_chatter, seed)]


def measure() -> dict[str, float | int | dict[str, int]]:
    """Recall on :func:`generated_secrets` and false-positive rate on :func:`ordinary_text`."""
    from ..codec import Codec
    from ..errors import SecretDetectedError
    from ..security.guard import SecretGuard

    codec = Codec(guard=SecretGuard())

    def refused(text: str) -> bool:
        try:
            codec.encode({"role": "tool", "content": text}, "message", "session/x/history")
        except SecretDetectedError:
            return True
        return False

    missed: dict[str, int] = {}
    secrets = list(generated_secrets())
    for family, text in secrets:
        if not refused(text):
            missed[family] = missed.get(family, 0) + 1
    ordinary = ordinary_text()
    false_positives = sum(refused(t) for t in ordinary)
    return {
        "secrets": len(secrets),
        "recall": 1 - sum(missed.values()) / len(secrets),
        "missed_by_family": missed,
        "ordinary_texts": len(ordinary),
        "false_positive_rate": false_positives / len(ordinary),
    }
