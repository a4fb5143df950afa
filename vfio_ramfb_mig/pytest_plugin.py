"""pytest plugin (entry point ``vmig``): golden-file assertions for migration streams.

Filled in by the golden-file work; registering the options early keeps
``pytest --vmig-update-golden`` valid in every project that installs vmig.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vmig")
    group.addoption("--vmig-update-golden", action="store_true", default=False,
                    help="rewrite vmig golden files instead of comparing with them")
