"""The secret guard: detection quality on labelled corpora, the password rule, and error paths.

Counts, not timings: every assertion here is deterministic.
"""

from typing import Any

import pytest

import statekeel
from statekeel.codec import Codec
from statekeel.errors import SecretDetectedError
from statekeel.security.guard import SecretGuard, redact
from statekeel.testing.secret_corpus import generated_secrets, measure, ordinary_messages

_CODEC = Codec(guard=SecretGuard())


def _refused(value: Any) -> bool:
    try:
        _CODEC.encode(value, "value")
    except SecretDetectedError:
        return True
    return False


def test_recall_and_false_positive_rate() -> None:
    result = measure()
    assert result["secrets"] >= 500 and result["families"] >= 25
    assert result["recall"] >= 0.99, result
    assert result["ordinary_messages"] >= 2000 and result["tricky_messages"] >= 2000
    assert result["false_positive_rate"] <= 0.005, result
    # the shapes a scanner confuses with keys (base64, hex, UUIDs, dotted ids…) on their own, too
    assert result["tricky_false_positive_rate"] <= 0.005, result


def test_every_family_and_shape_is_represented() -> None:
    families = {f for f, _ in generated_secrets(n_per_family=1)}
    assert len(families) >= 25
    assert len(ordinary_messages(n_per_shape=1)) >= 13 + 5000


# -- the password rule: refused at any length; empty values and placeholders pass ---------------
@pytest.mark.parametrize(
    "value",
    [
        {"password": "x"},
        {"password": "pw"},
        {"password": "hunter2"},
        {"password": "correct horse battery staple"},
        {"db_password": "a b"},
        {"dbPassword": "abc"},
        {"pwd": "abc"},
        {"passphrase": "open sesame"},
        {"secret": "s"},
        {"client_secret": "abc"},
        {"api_key": "abcd"},
        {"apiKey": "k1"},
        {"X-Api-Key": "k1"},
        {"access_token": "t"},
        {"Authorization": "Basic dTpw"},
        {"token": "a1b2c3d4e5f6g7h8"},
        {"cfg": [{"password": "1"}]},
    ],
    ids=repr,
)
def test_password_fields_are_refused_at_any_length(value: dict[str, Any]) -> None:
    assert _refused(value)


@pytest.mark.parametrize(
    "text",
    [
        "password=a",
        "password=hunter2",
        "PASSWORD=x1",
        "db_password = pw",
        "dbPassword=pw",
        "PGPASSWORD='8'",
        "--password=abc",
        "passwd: pw",
        "password: hunter2",
        'cfg = {"password": "ab"}',
        "https://example.com/login?user=bob&password=q1&next=/",
        "api_key=k",
        "secret=s&x=1",
        "redis://:p@cache.internal:6379/0",
        "postgresql://app:pw@db.internal/main",
    ],
)
def test_password_assignments_are_refused_at_any_length(text: str) -> None:
    assert _refused(text)


@pytest.mark.parametrize(
    "value",
    [
        {"password": ""},
        {"password": "   "},
        {"password": "***"},
        {"password": "••••••"},
        {"password": "xxxx"},
        {"password": "<redacted>"},
        {"password": "<your password>"},
        {"password": "[REDACTED]"},
        {"password": "[REDACTED:secret_field]"},
        {"password": "${PASSWORD}"},
        {"password": "$DB_PASSWORD"},
        {"password": "{{ db_password }}"},
        {"password": "%(password)s"},
        {"password": "None"},
        {"password_hint": "the usual one"},
        {"password_policy": "min 12 characters"},
        {"token": "Hello"},
        {"next_token": "2"},
        {"tokens_used": 1234},
        {"pwd": "/home/alice"},
        {"password": None},
    ],
    ids=repr,
)
def test_empty_and_placeholder_passwords_pass(value: dict[str, Any]) -> None:
    assert not _refused(value)


@pytest.mark.parametrize(
    "text",
    [
        "password=",
        "password=***",
        "password = ${DB_PASSWORD}",
        'password: ""',
        "password=<redacted>",
        "conn = connect(user=user, password=password)",
        "password=self.password",
        'password = os.environ["DB_PASSWORD"]',
        "password=getpass.getpass()",
        "client = Client(api_key=settings.OPENAI_API_KEY)",
        "class S(BaseModel):\n    password: SecretStr\n    api_key: str",
        "password: the one from the onboarding email",
        "Reset your password from the account settings page.",
        "PWD=/home/alice/project",
        "postgresql://app:${DB_PASSWORD}@db.internal/main",
        "postgresql://app:<password>@db.internal/main",
    ],
)
def test_password_placeholders_code_and_prose_pass(text: str) -> None:
    assert not _refused(text)


def test_redacted_values_can_be_stored_again() -> None:
    """What redact mode stored (``[REDACTED:…]``) passes a refusing guard: copies, forks and rotation re-encode it."""
    redacted = redact({"password": "hunter2-hunter2", "note": "password=hunter2 and AKIAIOSFODNN7EXAMPLE"})
    assert redacted == {
        "password": "[REDACTED:secret_field]",
        "note": "[REDACTED:password_assignment] and [REDACTED:aws_access_key]",
    }
    assert not _refused(redacted)


# -- shapes that are not secrets ---------------------------------------------------------------
def test_base64_payloads_hex_ids_and_uuids_pass() -> None:
    messages = ordinary_messages(n_per_shape=5, seed=3)[-13 * 5 :]
    assert [m for m in messages if _refused(m if not isinstance(m, str) else {"content": m})] == []


def test_a_random_key_in_a_url_query_is_still_refused() -> None:
    assert _refused("https://api.example.com/v1/items?key=Zk3q9TbLx2Vw8RmN4pQs7YcD1hJf6GaE")


def test_a_non_jwt_dotted_id_passes_and_a_signed_jwt_does_not() -> None:
    cursor = "eyJwYWdlIjoyfQ.eyJzb3J0IjoiYXNjIn0.c29tZXRoaW5nMTIz"  # base64 JSON parts, no "alg"
    assert not _refused(f"next: {cursor}")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    assert _refused(f"auth {jwt}")


# -- the error names the message ---------------------------------------------------------------
def test_refusal_names_the_index_of_the_message_in_the_append(store: statekeel.Store) -> None:
    s = store.session("s")
    s.append("before")
    with pytest.raises(SecretDetectedError) as info:
        s.append("a", {"role": "user", "content": "b"}, {"role": "tool", "content": "key AKIAIOSFODNN7EXAMPLE"}, "d")
    assert info.value.path == "session['s'].append messages[2]['content']"
    assert "messages[2]['content']" in str(info.value) and "an aws access key" in str(info.value)
    with pytest.raises(SecretDetectedError) as info:
        with s.batch() as b:
            b.append("x")
            b.append({"password": "pw"})
    assert info.value.path == "session['s'].append messages[1]['password']"
    assert s.history() == ["before"]
