"""Long fuzz runs of the decoder and the JSON reader (`make fuzz`).

Collected only when asked for: HYPOTHESIS_PROFILE=fuzz (what `make fuzz` sets) or
VMIG_FUZZ=1; the default suite skips this directory. The "fuzz" profile runs many
examples without a deadline; VMIG_FUZZ_EXAMPLES changes how many.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

ENABLED = os.environ.get("VMIG_FUZZ") == "1" or os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("VMIG_FUZZ_EXAMPLES", "1000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

if ENABLED:
    settings.load_profile("fuzz")

# without the switch, nothing here is collected (this conftest belongs to tests/fuzz only)
collect_ignore_glob = [] if ENABLED else ["test_*.py"]
