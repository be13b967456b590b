"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rig.focuser import Focuser
from rig.rails import open_focuser


@pytest.fixture
def rail(sim: Any) -> Iterator[Focuser]:
    """The module's simulator (its ``sim`` fixture) opened by its URL, as a user opens a rail."""
    focuser = open_focuser(sim.url)
    yield focuser
    focuser.close()
