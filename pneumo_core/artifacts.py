"""Files that travel with a model: where its reports live, the sidecar of an export, digests, and
tolerant readers for the JSON and CSV reports.

No TensorFlow and no dashboard code: training, export, inference and the report readers all
import from here, so none of them has to import another's module for a path or a reader.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas loads with the first CSV read, not when the CLI starts
    import pandas as pd


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def reports_dir(model_path: str | Path) -> Path:
    """Where a model's reports live (threshold, validation scores, OOD detector, test metrics):
    ``<its folder>/reports/<its name>/``, e.g. ``models/reports/finetuned/``."""
    model_path = Path(model_path)
    return model_path.parent / "reports" / model_path.stem


def sidecar(path: str | Path) -> Path:
    """The metadata file written beside an exported model: ``<file>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_json(path: Path) -> dict:
    """The JSON object in ``path``, or {} when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def read_csv(path: Path) -> pd.DataFrame | None:
    """The table in ``path``, or None when it is missing or unreadable."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
