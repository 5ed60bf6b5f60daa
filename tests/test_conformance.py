"""Collects the public conformance suite so it runs on every selected backend."""

from statekeel.testing.conformance.test_async import *  # noqa: F403
from statekeel.testing.conformance.test_closing import *  # noqa: F403
from statekeel.testing.conformance.test_model import *  # noqa: F403
from statekeel.testing.conformance.test_processes import *  # noqa: F403
from statekeel.testing.conformance.test_protocol import *  # noqa: F403
from statekeel.testing.conformance.test_protocol_bounds import *  # noqa: F403
from statekeel.testing.conformance.test_protocol_types import *  # noqa: F403
from statekeel.testing.conformance.test_protocol_refresh import *  # noqa: F403
from statekeel.testing.conformance.test_sessions import *  # noqa: F403
from statekeel.testing.conformance.test_state import *  # noqa: F403
from statekeel.testing.conformance.test_values import *  # noqa: F403
from statekeel.testing.conformance.test_security import *  # noqa: F403
from statekeel.testing.conformance.test_decisions import *  # noqa: F403
from statekeel.testing.conformance.test_runs import *  # noqa: F403
from statekeel.testing.conformance.test_notes import *  # noqa: F403
from statekeel.testing.conformance.test_checkpoints import *  # noqa: F403
from statekeel.testing.conformance.test_events import *  # noqa: F403
from statekeel.testing.conformance.test_upcasting import *  # noqa: F403
from statekeel.testing.conformance.test_tenants import *  # noqa: F403
from statekeel.testing.conformance.test_lifecycle import *  # noqa: F403
from statekeel.testing.conformance.test_idempotency import *  # noqa: F403
from statekeel.testing.conformance.test_leases import *  # noqa: F403
from statekeel.testing.conformance.test_run_liveness import *  # noqa: F403
from statekeel.testing.conformance.test_retention import *  # noqa: F403
from statekeel.testing.conformance.test_positions import *  # noqa: F403
from statekeel.testing.conformance.test_tamper import *  # noqa: F403
