"""Collects the public conformance suite so it runs on every selected backend."""

from statekeel.testing.conformance.test_model import *  # noqa: F403
from statekeel.testing.conformance.test_processes import *  # noqa: F403
from statekeel.testing.conformance.test_protocol import *  # noqa: F403
from statekeel.testing.conformance.test_sessions import *  # noqa: F403
from statekeel.testing.conformance.test_state import *  # noqa: F403
from statekeel.testing.conformance.test_values import *  # noqa: F403
