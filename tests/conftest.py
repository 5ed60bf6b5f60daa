import os

import pytest

pytest_plugins = ["statekeel.testing.plugin"]


def missing(reason: str) -> None:
    """A tool or server the test needs is absent: a failure in CI (which installs
    everything through scripts/test.sh), a skip on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this is a failure, not a skip: {reason}")
    pytest.skip(reason)
