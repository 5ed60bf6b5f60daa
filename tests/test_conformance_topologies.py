"""The whole conformance suite again on the production topologies: DynamoDB (a local moto server the
tests start) and the tiered Redis-hot/PostgreSQL-cold store in both modes (write-through, write-behind).

Collected in the same pytest run as everything else, on these three backends only (the
``statekeel_backends`` mark); ``--statekeel-backends=dynamodb`` narrows it to the ones it names.
"""

import pytest
from test_conformance import *

pytestmark = pytest.mark.statekeel_backends("dynamodb", "tiered", "tiered-wb")
