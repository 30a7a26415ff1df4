"""Listing a Kermany-layout folder (``DIR/{NORMAL,PNEUMONIA}`` or a root with ``train/`` and ``test/``): one
row per film with its label and patient, and the patient-grouped, stratified validation split."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pneumo_core.config import CLASS_NAMES

if TYPE_CHECKING:  # pandas loads with the first listing, not when the CLI starts
    import pandas as pd

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp"}  # what the tf.data training pipeline decodes
# File-name prefixes that identify a patient in the Kermany set. NORMAL2-IM-0123 and
# IM-0123 are different series, so the full prefix is kept.
_PATIENT_RE = re.compile(r"^(person\d+|NORMAL2-IM-\d+|IM-\d+)[_-]", re.IGNORECASE)


def patient_id(filename: str) -> str:
    """Patient id from a Kermany file name; the file stem itself when no known prefix matches."""
    name = Path(filename).name
    m = _PATIENT_RE.match(name)
    return m.group(1).upper() if m else Path(name).stem


def resolve_split_dir(path: str | Path, default_split: str = "test") -> Path:
    """A folder with NORMAL/ and PNEUMONIA/ inside, or a dataset root whose ``default_split`` is used."""
    path = Path(path)
    if all((path / c).is_dir() for c in CLASS_NAMES):
        return path
    if all((path / default_split / c).is_dir() for c in CLASS_NAMES):
        return path / default_split
    raise FileNotFoundError(
        f"{path} is neither a split folder with {'/ and '.join(CLASS_NAMES)}/ inside "
        f"nor a dataset root with {default_split}/{CLASS_NAMES[0]}/ inside"
    )


def list_images(split_dir: str | Path, suffixes=IMAGE_SUFFIXES) -> pd.DataFrame:
    """One row per image: ``path``, ``file``, ``label`` (0 NORMAL, 1 PNEUMONIA), ``patient``.

    Only files with one of ``suffixes`` are listed (training: what tf.data decodes; evaluation
    passes ``images.READABLE_SUFFIXES``, DICOM included); hidden files (``.DS_Store``) and notes
    are ignored. Sorted, so the order is reproducible.
    """
    import pandas as pd

    split_dir = Path(split_dir)
    rows = []
    for label, cls in enumerate(CLASS_NAMES):
        cls_dir = split_dir / cls
        if not cls_dir.is_dir():
            raise FileNotFoundError(f"missing class folder {cls_dir}")
        for p in sorted(cls_dir.iterdir()):
            if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."):
                rows.append({"path": str(p), "file": p.name, "label": label, "patient": patient_id(p.name)})
    if not rows:
        raise FileNotFoundError(f"no images under {split_dir}")
    return pd.DataFrame(rows)


def model_selection(what: str):
    """scikit-learn's ``model_selection`` (the seeded splitters every recorded split was made with). The runtime
    (requirements.txt) has no scikit-learn: :class:`MissingDependency` then, one line naming ``what`` needs it."""
    try:
        from sklearn import model_selection
    except ImportError:
        from pneumo_core.errors import MissingDependency
        from pneumo_core.inference.backends import TRAIN_INSTALL

        raise MissingDependency(f"{what} needs scikit-learn: {TRAIN_INSTALL}") from None
    return model_selection


def patient_split(df: pd.DataFrame, val_fraction: float = 0.15, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified, seeded train/validation split with every patient on one side only."""
    StratifiedGroupKFold = model_selection("the patient-grouped validation split").StratifiedGroupKFold

    n_splits = max(2, round(1 / val_fraction))
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(sgkf.split(df, df["label"], groups=df["patient"]))
    return df.iloc[train_idx].reset_index(drop=True), df.iloc[val_idx].reset_index(drop=True)
