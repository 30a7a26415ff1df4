"""Helpers the tests import (pytest loads conftest.py itself; importing it too would make a
second copy of it under another module name)."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

REQUIRE = os.environ.get("PNEUMO_REQUIRE_DATA") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false; fail instead under CI."""
    if not condition:
        if REQUIRE:
            pytest.fail(f"required by PNEUMO_REQUIRE_DATA=1: {reason}")
        pytest.skip(reason)


def parse(path: Path) -> ast.Module:
    """``path``'s syntax tree. CPython 3.11 before 3.11.8 keeps the AST builder's recursion depth in state shared
    by every thread, so a parse that overlaps one in another thread (a server or a library thread left by an
    earlier test) can fail with a spurious "AST constructor recursion depth mismatch" SystemError (gh-106905):
    such a failure is retried; a real syntax error is not."""
    source = path.read_text()
    for attempt in range(5):
        try:
            return ast.parse(source, filename=str(path))
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")
