"""Helpers the tests import (pytest loads conftest.py itself; importing it too would make a
second copy of it under another module name)."""
from __future__ import annotations

import os

import pytest

REQUIRE = os.environ.get("PNEUMO_REQUIRE_DATA") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false; fail instead under CI."""
    if not condition:
        if REQUIRE:
            pytest.fail(f"required by PNEUMO_REQUIRE_DATA=1: {reason}")
        pytest.skip(reason)
