"""The secret guard's detection quality on labelled corpora (deterministic; no timing)."""

from statekeel.testing.secret_corpus import generated_secrets, measure


def test_recall_and_false_positive_rate() -> None:
    result = measure()
    assert result["secrets"] >= 1000
    assert result["recall"] >= 0.99, result
    assert result["ordinary_texts"] >= 2000
    assert result["false_positive_rate"] <= 0.005, result


def test_every_family_is_represented() -> None:
    families = {f for f, _ in generated_secrets(n_per_family=1)}
    assert len(families) >= 12
