"""The three evaluation protocols (pneumo_core.datasets.protocols): who is on which side, seeded, and
``evaluate --protocol`` reading exactly the protocol's test part."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pneumo_core.datasets import protocols
from pneumo_core.datasets.listing import list_images, patient_split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def splits(data_root):
    return {p: protocols.split(data_root, p, seed=42) for p in protocols.PROTOCOLS}


def test_official_is_the_existing_patient_split(data_root, splits):
    train, val = patient_split(list_images(data_root / "train"), 0.15, seed=42)
    ps = splits["official"]
    assert list(ps.train.path) == list(train.path) and list(ps.val.path) == list(val.path)
    assert set(ps.test.path) == set(list_images(data_root / "test").path)
    assert ps.summary()["leakage"]["test"]["patients_also_in_train"] == 0


@pytest.mark.parametrize("protocol", ["patient-resplit", "image-resplit"])
def test_resplits_pool_both_folders_80_10_10_stratified(protocol, splits):
    ps = splits[protocol]
    protocols.check_disjoint(ps)
    parts = ps.parts()
    n = sum(len(df) for df in parts.values())
    assert n == 5216 + 624
    pool_rate = sum(df.label.sum() for df in parts.values()) / n
    for name, share in zip(("train", "validation", "test"), protocols.RESPLIT_FRACTIONS):
        df = parts[name]
        assert len(df) / n == pytest.approx(share, abs=0.01), name
        assert df.label.mean() == pytest.approx(pool_rate, abs=0.01), f"{name} is not stratified"
        assert (df.origin == "test").any() and (df.origin == "train").any(), "both folders must be pooled"


def test_patient_resplit_keeps_children_apart_and_image_resplit_does_not(splits):
    by_patient, by_image = splits["patient-resplit"], splits["image-resplit"]
    assert by_patient.summary()["leakage"]["test"]["patients_also_in_train"] == 0
    leak = by_image.summary()["leakage"]["test"]
    # an image-level split puts most children with several films on both sides
    assert leak["patients_also_in_train"] > 0.3 * leak["patients"]
    assert leak["images_of_those_patients"] <= leak["images"]


def test_pooled_patients_are_keyed_by_folder(data_root, splits):
    """train/ and test/ number their children independently: person1 of each is someone else."""
    pool = splits["patient-resplit"]
    everyone = set().union(*(set(df.patient) for df in pool.parts().values()))
    assert {"train/PERSON1", "test/PERSON1"} <= everyone


def test_splits_are_seeded(data_root, splits):
    again = protocols.split(data_root, "image-resplit", seed=42)
    other = protocols.split(data_root, "image-resplit", seed=7)
    assert list(again.test.path) == list(splits["image-resplit"].test.path)
    assert set(other.test.path) != set(again.test.path)


def test_unknown_protocol_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="unknown protocol"):
        protocols.split(tmp_path, "random")
    with pytest.raises(FileNotFoundError, match="pools train/ and test/"):
        protocols.split(tmp_path, "image-resplit")


def _tiny_root(data_root: Path, tmp_path: Path, per_class: int = 10) -> Path:
    """A dataset root with a few real films per folder and class (symlinks)."""
    root = tmp_path / "root"
    for origin in ("train", "test"):
        for cls in ("NORMAL", "PNEUMONIA"):
            (root / origin / cls).mkdir(parents=True)
            for f in sorted((data_root / origin / cls).glob("*.jpeg"))[:per_class]:
                (root / origin / cls / f.name).symlink_to(f)
    return root


def test_evaluate_reads_the_protocols_test_part(data_root, tmp_path, capsys):
    from pneumo_core.cli import main

    root = _tiny_root(data_root, tmp_path)
    want = protocols.test_part(root, "image-resplit", seed=3)
    out = tmp_path / "report"
    assert main(["evaluate", "--model", "frozen", "--data", str(root), "--protocol", "image-resplit",
                 "--split-seed", "3", "--bootstrap", "20", "--write-report", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["protocol"] == "image-resplit" and printed["n"] == len(want)
    written = json.loads((out / "metrics.json").read_text())
    assert written["protocol"] == "image-resplit"
    import pandas as pd

    preds = pd.read_csv(out / "test_predictions.csv")
    # files keep their folder: train/ and test/ reuse names such as IM-0001-0001.jpeg
    assert sorted(preds.file) == sorted(str(Path(p).relative_to(root)) for p in want.path)
    assert set(preds.patient) == set(want.patient)
