"""Paths as report files record them (``training.json``, ``metrics.json``, export sidecars), free of
this machine's layout, and back.

The convention (docs/evaluation.md, "Paths in the report files"):

- a path inside the dataset is recorded as ``$PNEUMO_DATA_DIR/<its path inside the dataset>``, the
  dataset root itself as ``$PNEUMO_DATA_DIR`` (the variable that sets the root; default
  ``../shared/data/chest_xray``): ``$PNEUMO_DATA_DIR/test``, ``$PNEUMO_DATA_DIR/train``;
- any other path as relative to the checkout, with ``/`` separators (``models/frozen.keras``,
  ``runs/member1``), ``../`` for a folder beside the checkout (``../shared/weights/...``);
- a path outside both stays absolute; ``tests/unit/test_no_machine_paths.py`` refuses one in a
  committed file.

Recorded commands keep their words; only the paths in them are rewritten, so a command runs again
from the checkout with ``PNEUMO_DATA_DIR`` exported. :func:`resolve` turns a recorded path back into
a path on this machine.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from pneumo_core import config

#: How a recorded path names the dataset root.
DATA_ROOT = "$PNEUMO_DATA_DIR"
#: Keys whose string values are paths (in any nesting of a record); other strings are free text.
PATH_KEYS = frozenset({"data", "root", "out", "weights", "file", "folder"})
#: A path in free text: an absolute one (after a space, ``=``, a bracket or a quote; not ``://``), or
#: one that starts with ``./`` or ``../``.
_PATH_IN_TEXT = re.compile(r"(?<![^\s=(\[\"'`])(?:\.{1,2})?/[^\s\"'`),;\]]*")


def _inside(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (POSIX) when it is ``root`` or lies inside it, else None."""
    if path == root:
        return "."
    prefix = root.rstrip(os.sep) + os.sep
    return Path(path[len(prefix):]).as_posix() if path.startswith(prefix) else None


def _relative_to_roots(absolute: str) -> str | None:
    """The recorded form of an absolute path under the data root or beside the checkout, else None."""
    data = config.data_dir()
    for root in dict.fromkeys((os.path.abspath(data), os.path.realpath(data))):
        rel = _inside(absolute, root)
        if rel is not None:
            return DATA_ROOT if rel == "." else f"{DATA_ROOT}/{rel}"
    project = config.PROJECT_DIR
    base = project.parent
    if len(base.parts) > 1 and _inside(absolute, str(base)) is not None:  # never relative to "/" itself
        return Path(os.path.relpath(absolute, project)).as_posix()
    return None


def record_path(path: str | Path) -> str:
    """``path`` (absolute, or relative to the working folder) in the recorded form."""
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    found = _relative_to_roots(absolute)
    if found is None and os.path.realpath(absolute) != absolute:  # reached through a link
        found = _relative_to_roots(os.path.realpath(absolute))
    return found if found is not None else absolute


def record_text(text: str) -> str:
    """``text`` (a command line, a sentence) with every path in it in the recorded form: absolute paths
    under the data root or beside the checkout, and ``./``/``../`` paths that exist from the working
    folder; every other word, and a path outside both, untouched."""
    def one(match: re.Match) -> str:
        token, tail = match.group(0), ""
        while len(token) > 1 and token[-1] in ".:" and not token.endswith(("/.", "/..")):  # sentence punctuation
            token, tail = token[:-1], token[-1] + tail
        if token.startswith("/"):
            found = _relative_to_roots(os.path.normpath(token))
        else:
            found = record_path(token) if os.path.exists(token) else None
        return match.group(0) if found is None else found + tail

    return _PATH_IN_TEXT.sub(one, text)


def _is_path(value: str) -> bool:
    return value.startswith("/") or (value not in ("", ".") and os.path.exists(value))


def record(value, key: str | None = None):
    """A copy of ``value`` (a report record: dicts, lists, strings, numbers) with its paths in the
    recorded form: strings under :data:`PATH_KEYS` that are paths by :func:`record_path`, every
    other string by :func:`record_text`."""
    if isinstance(value, dict):
        return {k: record(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [record(v, key) for v in value]
    if isinstance(value, str):
        return record_path(value) if key in PATH_KEYS and _is_path(value) else record_text(value)
    return value


def resolve(recorded: str | Path) -> Path:
    """A recorded path on this machine: ``$PNEUMO_DATA_DIR[/...]`` under :func:`config.data_dir`, a
    relative path under the checkout, an absolute one as it is."""
    text = str(recorded)
    if text == DATA_ROOT or text.startswith(DATA_ROOT + "/"):
        return config.data_dir() / text[len(DATA_ROOT) + 1:] if text != DATA_ROOT else config.data_dir()
    path = Path(text).expanduser()
    return path if path.is_absolute() else config.PROJECT_DIR / path
