"""``python -m pneumo_core site adapt PATH... --out DIR``: the opt-in EM prior-shift adaptation (issue 22) as a
subprocess on real training films linked into a temporary folder: the record, the report, and the refusals."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pneumo_core.adaptation.adapt import MIN_FILMS, PREREGISTRATION, site_threshold
from pneumo_core.config import data_dir
from pneumo_core.datasets.listing import list_images
from tests.helpers.support import require

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pneumo_core", "site", "adapt", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def pneumonia_films(tmp_path_factory):
    """A folder of MIN_FILMS PNEUMONIA training films (links) and one file that is not an image."""
    train = data_dir() / "train"
    require(train.is_dir(), f"training films not found at {train} (set PNEUMO_DATA_DIR)")
    films = list_images(train)
    folder = tmp_path_factory.mktemp("site") / "films"
    folder.mkdir()
    for path in films[films.label == 1].path.head(MIN_FILMS):
        (folder / Path(path).name).symlink_to(path)
    (folder / "broken.png").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def adapted(pneumonia_films):
    out = pneumonia_films.parent / "adapted"
    return out, run_cli(pneumonia_films, "--out", out, "--json")


def test_adapt_writes_the_record_and_the_report(adapted, pneumonia_films):
    out, res = adapted
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    assert json.loads((out / "adaptation.json").read_text()) == record
    assert record["model"] == "finetuned" and len(record["model_sha256"]) == 64
    assert record["films_scored"] == MIN_FILMS and record["films_not_scored"] == 1
    # every film is PNEUMONIA: EM puts the share above the training share, so the bar on the scores comes down
    assert record["estimated_site_prevalence"] > record["train_prevalence"]
    assert record["threshold_site"] < record["threshold_model"]
    assert record["threshold_site"] == pytest.approx(site_threshold(
        record["threshold_model"], record["train_prevalence"], record["estimated_site_prevalence"]))
    assert record["preregistration"] == PREREGISTRATION and "one or two labels per half" in record["evidence"]
    report = (out / "README.txt").read_text()
    assert record["model_sha256"] in report and f"--threshold {record['threshold_site']:.3f}" in report
    assert "an improvement was not shown" in report and PREREGISTRATION in report
    names = [p.name for p in pneumonia_films.iterdir()]
    assert not any(name in report or name in res.stdout for name in names)  # no film named
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "adaptation.json"]  # no model copied


def test_adapt_refuses_an_existing_record(adapted, pneumonia_films):
    out, _ = adapted
    before = (out / "adaptation.json").read_text()
    res = run_cli(pneumonia_films, "--out", out)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "already holds an adaptation.json" in res.stderr and "Traceback" not in res.stderr
    assert (out / "adaptation.json").read_text() == before


def test_adapt_refuses_too_few_films_and_writes_nothing(pneumonia_films, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(pneumonia_films.glob("*.jpeg"))[:MIN_FILMS - 1]:
        (few / path.name).symlink_to(path.resolve())
    res = run_cli(few, "--out", tmp_path / "out")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == f"error: {MIN_FILMS - 1} films given; adapting to a site needs at least {MIN_FILMS}"
    assert not (tmp_path / "out").exists()


def test_adapt_refuses_a_missing_path_and_a_file_as_out(pneumonia_films, tmp_path):
    res = run_cli(tmp_path / "nowhere", "--out", tmp_path / "out")
    assert res.returncode == 2 and res.stderr.strip() == f"error: no such file or folder: {tmp_path / 'nowhere'}"
    (tmp_path / "file").write_text("x")
    res = run_cli(pneumonia_films, "--out", tmp_path / "file")
    assert res.returncode == 2 and "is a file, not a folder" in res.stderr and "Traceback" not in res.stderr
