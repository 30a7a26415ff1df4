"""Turning an exception into the one-line reason a user is shown."""
from __future__ import annotations


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message, at most ``limit`` characters; the exception's
    type name when the message is empty (``str(exc).splitlines()[0]`` raises IndexError there)."""
    text = str(exc)
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
