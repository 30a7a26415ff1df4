"""``score --dicomweb`` (issue 23) against a real Orthanc: every CR/DX instance of the studies found is scored into
Parquet under a hashed reference; no UID reaches the results, the output or the summary; a study that cannot be
scored is one row with its error; ``--resume`` skips what is stored; and the Ray engine's actors retrieve the
instances themselves."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from pydicom.uid import generate_uid

from pneumo_core.cli import main
from pneumo_core.scoring.engines import ray_available
from pneumo_core.scoring.sources import film_reference
from pneumo_core.storage.audit import study_reference
from tests.conftest import ROOT
from tests.helpers.dicom_files import PATIENT_ID, dx_film, grey
from tests.helpers.orthanc import ENV_NAMES
from tests.helpers.support import require

REFERENCE = re.compile(r"st-[0-9a-f]{16}/in-[0-9a-f]{16}")


@pytest.fixture(scope="module")
def archive(orthanc, data_root):
    """Two DX/CR studies of three films and a CT-only study; returns (films by reference, every UID, CT study)."""
    normal = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))
    pneumonia = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))
    studies = [generate_uid() for _ in range(3)]
    plan = [(studies[0], normal[5], "DX"), (studies[0], pneumonia[5], "DX"), (studies[1], pneumonia[6], "CR"),
            (studies[2], normal[6], "CT")]
    expected, uids = {}, set(studies)
    for study, film, modality in plan:
        series, sop = generate_uid(), generate_uid()
        uids |= {series, sop}
        data = dx_film(grey(film), Modality=modality, StudyInstanceUID=study, SeriesInstanceUID=series,
                       SOPInstanceUID=sop, StudyDate="20240105", StudyTime="101500", StudyID="S1")
        orthanc.upload(data)
        if modality != "CT":
            expected[film_reference(study, sop)] = film
    return expected, uids, studies[2]


@pytest.fixture
def pacs_env(monkeypatch, orthanc):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in orthanc.env().items():
        monkeypatch.setenv(name, value)


def assert_no_uid(uids, *texts):
    for text in texts:
        for uid in uids:
            assert uid not in text


def test_pacs_films_are_stored_under_hashed_references(orthanc, archive, pacs_env, tmp_path, capsys, shipped_predictor):
    expected, uids, ct_study = archive
    out = tmp_path / "results"
    capsys.readouterr()
    assert main(["score", "--dicomweb", orthanc.dicomweb, "--out", str(out), "--json"]) == 0
    stdout, err = capsys.readouterr()
    summary = json.loads(stdout)
    assert summary["films"] == summary["scored"] == 3 and summary["errors"] == 0
    table = pq.read_table(out)
    rows = {r["file"]: r for r in table.to_pylist()}
    assert set(rows) == set(expected) and all(REFERENCE.fullmatch(key) for key in rows)
    for key, film in expected.items():
        row = rows[key]
        assert row["error"] is None and row["label"] in ("NORMAL", "PNEUMONIA") and len(row["content_sha256"]) == 64
        # the DX copy of a film is scored close to the film itself (12-bit, windowed)
        assert row["p_pneumonia"] == pytest.approx(shipped_predictor.predict(film).p_pneumonia, abs=0.05)
    raw = b"".join(p.read_bytes() for p in out.glob("part-*.parquet")).decode("latin-1")
    assert_no_uid(uids, stdout, err, raw, json.dumps(table.to_pylist(), default=str))
    assert PATIENT_ID not in raw and orthanc.password not in stdout + err

    # resumed: nothing scored again; a study given by UID that has no CR/DX film is one row with its error
    capsys.readouterr()
    assert main(["score", "--dicomweb", orthanc.dicomweb, "--out", str(out), "--resume", "--json",
                 "--study", ct_study]) == 0
    stdout, err = capsys.readouterr()
    assert json.loads(stdout)["scored"] == 1 and json.loads(stdout)["errors"] == 1
    failed = [r for r in pq.read_table(out).to_pylist() if r["error"]]
    assert len(failed) == 1 and failed[0]["file"] == study_reference(ct_study)
    assert "no CR/DX instance" in failed[0]["error"]
    assert_no_uid(uids, stdout, err, failed[0]["error"])
    capsys.readouterr()
    assert main(["score", "--dicomweb", orthanc.dicomweb, "--out", str(out), "--resume", "--json"]) == 0
    again = json.loads(capsys.readouterr()[0])
    assert again["scored"] == 0 and again["skipped"] == 3 and pq.read_table(out).num_rows == 4


@pytest.mark.slow
def test_ray_actors_retrieve_and_score_pacs_films(orthanc, archive, tmp_path):
    require(ray_available(), "Ray is not installed (pip install -r requirements-scale.txt)")
    expected, uids, _ = archive
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES} | orthanc.env()
    job = subprocess.run([sys.executable, "-m", "pneumo_core", "score", "--dicomweb", orthanc.dicomweb, "--out",
                          str(tmp_path / "ray"), "--engine", "ray", "--json"], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert job.returncode == 0, job.stderr
    assert json.loads(job.stdout)["scored"] == 3
    rows = pq.read_table(tmp_path / "ray").to_pylist()
    assert {r["file"] for r in rows} == set(expected) and all(r["error"] is None for r in rows)
    assert_no_uid(uids, job.stdout, job.stderr)
    assert orthanc.password not in job.stdout + job.stderr
