"""Evaluation protocols: which films train, validate and test a model.

* ``official``: the distributed split. Validation is carved from ``train/`` by patient (15 %,
  stratified, seeded); ``test/`` (a later acquisition batch) is the test part.
* ``patient-resplit``: ``train/`` and ``test/`` pooled, then 80/10/10 by **patient**, stratified
  by class, seeded. No child is on two sides, but the batch shift between the two folders is
  mixed into every part.
* ``image-resplit``: the same pool, 80/10/10 by **image**, stratified, seeded, as the reference
  write-up did. A child's films fall on several sides, so the test part holds near-copies of
  training films.

Patient ids are file-name prefixes (``data.patient_id``). The two folders number their patients
independently (``person1`` of ``train/`` has bacterial films, ``person1`` of ``test/`` viral ones,
and Kermany et al. split by patient), so in the pooled protocols a patient is keyed by folder and
prefix (``train/PERSON1``, ``test/PERSON1``).

Listing the test part reads file names only; its pixels are read when a run is evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pneumo_core.config import CLASS_NAMES
from pneumo_core.datasets import listing

if TYPE_CHECKING:  # pandas loads when a split is made, not when the CLI starts (0.3 s of every command)
    import pandas as pd

PROTOCOLS = ("official", "patient-resplit", "image-resplit")
OFFICIAL_VAL_FRACTION = 0.15  # of train/
RESPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, validation, test of the pooled films
DESCRIPTIONS = {
    "official": "the distributed split: test = the official test/ folder (a later batch); validation = 15 % of "
                "train/ by patient",
    "patient-resplit": "train/ and test/ pooled, re-split 80/10/10 by patient (stratified, seeded)",
    "image-resplit": "train/ and test/ pooled, re-split 80/10/10 by image (stratified, seeded), as the reference "
                     "write-up did",
}


@dataclass
class ProtocolSplit:
    """The three parts of one protocol, each a :func:`data.list_images` frame (``origin``: the
    folder a film came from, ``train`` or ``test``)."""

    protocol: str
    seed: int
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    notes: list = field(default_factory=list)

    def parts(self) -> dict[str, pd.DataFrame]:
        """The three parts by name: train, validation, test."""
        return {"train": self.train, "validation": self.val, "test": self.test}

    def summary(self) -> dict:
        """Counts per part and what leaks between them (for ``training.json`` and the reports)."""
        out = {"protocol": self.protocol, "description": DESCRIPTIONS[self.protocol], "split_seed": self.seed,
               "parts": {}, "leakage": leakage(self.train, self.val, self.test)}
        for name, df in self.parts().items():
            out["parts"][name] = {
                "images": int(len(df)), "patients": int(df.patient.nunique()),
                "NORMAL": int((df.label == 0).sum()), "PNEUMONIA": int((df.label == 1).sum()),
                "from_official_test": int((df.origin == "test").sum()),
            }
        return out


def leakage(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame) -> dict:
    """Patients of the test (and validation) part who also have films in the training part."""
    def key(df):  # official parts keep the bare prefix: the folder tells test/'s children apart
        return df.patient.where(df.patient.str.contains("/"), df.origin + "/" + df.patient)

    seen = set(key(train))
    out = {}
    for name, df in (("test", test), ("validation", val)):
        keys = key(df)
        shared = set(keys) & seen
        out[name] = {"patients_also_in_train": len(shared), "patients": int(keys.nunique()),
                     "images_of_those_patients": int(keys.isin(shared).sum()), "images": int(len(df))}
    return out


def _pool(root: Path) -> pd.DataFrame:
    import pandas as pd

    parts = []
    for origin in ("train", "test"):
        df = listing.list_images(root / origin)
        parts.append(df.assign(origin=origin, patient=origin + "/" + df.patient))
    return pd.concat(parts, ignore_index=True)


def _by_group(df: pd.DataFrame, n_splits: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, one stratified fold of whole patients), seeded."""
    StratifiedGroupKFold = listing.model_selection("the patient-resplit protocol").StratifiedGroupKFold
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rest, fold = next(sgkf.split(df, df["label"], groups=df["patient"]))
    return df.iloc[rest].reset_index(drop=True), df.iloc[fold].reset_index(drop=True)


def _by_image(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    train_test_split = listing.model_selection("the image-resplit protocol").train_test_split
    rest, part = train_test_split(df, test_size=fraction, stratify=df["label"], random_state=seed)
    return rest.reset_index(drop=True), part.reset_index(drop=True)


def _limited(df: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` films, half of each class (smoke runs)."""
    import pandas as pd

    if not limit:
        return df
    return pd.concat([g.sample(min(len(g), limit // 2), random_state=seed) for _, g in df.groupby("label")]) \
        .sort_values("path").reset_index(drop=True)


def split(root: str | Path, protocol: str = "official", seed: int = 42, limit: int | None = None,
          val_fraction: float = OFFICIAL_VAL_FRACTION) -> ProtocolSplit:
    """The train, validation and test parts of ``protocol`` for the Kermany-layout ``root``.

    ``official`` accepts the ``train/`` folder itself as ``root`` (no test part is listed then);
    ``limit`` keeps at most that many training-pool films (smoke runs; for ``official`` the
    test part is not limited)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    root = Path(root)
    if protocol == "official":
        films = listing.list_images(listing.resolve_split_dir(root, "train"))
        pool = _limited(films.assign(origin="train"), limit, seed)
        train, val = listing.patient_split(pool.drop(columns="origin"), val_fraction, seed)
        train, val = train.assign(origin="train"), val.assign(origin="train")
        test_dir = root / "test"
        test = listing.list_images(test_dir).assign(origin="test") if (test_dir / CLASS_NAMES[0]).is_dir() \
            else train.iloc[:0]
        return ProtocolSplit(protocol, seed, train, val, test)
    if not all((root / s).is_dir() for s in ("train", "test")):
        raise FileNotFoundError(f"{protocol} pools train/ and test/: {root} must be a dataset root holding both")
    pool = _limited(_pool(root), limit, seed)
    _, val_share, test_share = RESPLIT_FRACTIONS
    if protocol == "patient-resplit":
        rest, test = _by_group(pool, round(1 / test_share), seed)
        train, val = _by_group(rest, round((1 - test_share) / val_share), seed)
    else:
        rest, test = _by_image(pool, test_share, seed)
        train, val = _by_image(rest, val_share / (1 - test_share), seed)
    return ProtocolSplit(protocol, seed, train, val, test)


def test_part(root: str | Path, protocol: str, seed: int = 42) -> pd.DataFrame:
    """The films ``protocol`` evaluates on (its test part), sorted by path."""
    if protocol == "official" and (Path(root) / "test" / CLASS_NAMES[0]).is_dir():
        # test/ as it is: no validation split to draw (nor scikit-learn, which the runtime lacks, to draw it)
        df = listing.list_images(Path(root) / "test").assign(origin="test")
    else:
        df = split(root, protocol, seed).test
    if df.empty:
        raise FileNotFoundError(f"no test part: {root} has no test/ folder")
    return df.sort_values("path").reset_index(drop=True)


def check_disjoint(ps: ProtocolSplit) -> None:
    """Every film on one side only; every patient on one side only where the protocol says so."""
    files = [set(df.path) for df in ps.parts().values()]
    if any(a & b for i, a in enumerate(files) for b in files[i + 1:]):
        raise RuntimeError(f"{ps.protocol}: a film is in two parts")
    if ps.protocol != "image-resplit":
        # official: test/ numbers its children independently of train/, so only train and
        # validation (both carved from train/) are compared.
        parts = (ps.train, ps.val, ps.test) if ps.protocol == "patient-resplit" else (ps.train, ps.val)
        pats = [set(df.patient) for df in parts]
        if any(a & b for i, a in enumerate(pats) for b in pats[i + 1:]):
            raise RuntimeError(f"{ps.protocol}: a patient is in two parts")

