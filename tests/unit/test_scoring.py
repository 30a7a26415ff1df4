"""``score`` (issue 23) on the local engine: sources (folders, text/CSV/Parquet lists), hostile and unreadable
films in a list, the Parquet parts and their contract, refusing to mix jobs, the progress display, and a real
job SIGKILLed half way then resumed. The Ray engine and the PACS source: tests/integration/test_scoring_*.py."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pneumo_core.cli import main
from pneumo_core.cli.score import Progress
from pneumo_core.scoring.engines import Tally
from pneumo_core.scoring.results import SCHEMA, ResultsWriter, as_table, read_results
from pneumo_core.scoring.sources import expand_sources, film_reference, read_list
from tests.conftest import ROOT
from tests.helpers.dicom_files import make_dicom

CONTRACT = ["file", "content_sha256", "label", "p_pneumonia", "threshold", "is_chest_xray", "ood_distance", "error",
            "model", "model_sha256", "scored_at"]


def run(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def films(data_root: Path, n: int) -> list[Path]:
    """``n`` real test-split films, both classes."""
    normal = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))
    pneumonia = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))
    return [f for pair in zip(normal, pneumonia) for f in pair][:n]


# ---------------------------------------------------------------- sources
def test_lists_in_text_csv_and_parquet_name_the_same_films(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/one.jpeg", "a/deep/two.PNG", "a/.hidden.jpeg", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    folder, _ = expand_sources([tmp_path / "a"])
    assert [Path(f["file"]).name for f in folder] == ["two.PNG", "one.jpeg"]  # recursive, sorted, no hidden or .txt

    (tmp_path / "l.txt").write_text("# films\na/one.jpeg\n\n  a/deep/two.PNG  \n/abs/three.dcm\n")
    (tmp_path / "l.csv").write_text("patient,path\np1,a/one.jpeg\np2,a/deep/two.PNG\np3,/abs/three.dcm\n")
    pq.write_table(pa.table({"file": ["a/one.jpeg", "a/deep/two.PNG", "/abs/three.dcm"]}), tmp_path / "l.parquet")
    want = [str(tmp_path / "a/one.jpeg"), str(tmp_path / "a/deep/two.PNG"), "/abs/three.dcm"]
    for name in ("l.txt", "l.csv", "l.parquet"):
        assert read_list(tmp_path / name) == want, name  # relative paths from the list's own folder
    (tmp_path / "bare.csv").write_text("a/one.jpeg\n/abs/three.dcm\n")  # no header: the first column
    assert read_list(tmp_path / "bare.csv") == [want[0], want[2]]
    # the same film named twice, by two sources, is scored once
    both, _ = expand_sources([tmp_path / "l.txt", tmp_path / "l.csv"])
    assert [f["file"] for f in both] == want


def test_broken_or_missing_lists_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "l.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "nocol.parquet").write_bytes(b"")
    pq.write_table(pa.table({"name": ["x"]}), tmp_path / "nocol.parquet")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9.jpeg\n".encode("latin-1"))
    for name, reason in [("l.parquet", "cannot read list l.parquet"), ("nocol.parquet", "has no file/path"),
                         ("latin1.txt", "is not UTF-8"), ("absent.txt", "list not found")]:
        code, out, err = run(["score", str(tmp_path / name), "--out", str(tmp_path / "out")], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1 and reason in err, (name, err)
        assert "Traceback" not in err


def test_pacs_references_hold_no_uid():
    study, sop = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    ref = film_reference(study, sop)
    assert ref == film_reference(study, sop) != film_reference(study, sop + "1")
    assert ref.startswith("st-") and "/in-" in ref and study not in ref and sop not in ref and len(ref) == 39


# ---------------------------------------------------------------- the results folder
def test_parts_are_whole_unique_and_readable_as_one_table(tmp_path):
    out = tmp_path / "results"
    writer = ResultsWriter(out)
    writer.write(as_table([{"file": "a", "error": "x"}, {"file": "b", "label": "NORMAL"}, {"file": "a"}]))
    stored = writer.write(as_table([{"file": "b"}, {"file": "c", "p_pneumonia": 0.25}]))
    assert stored.column("file").to_pylist() == ["c"]  # b was stored already
    assert writer.write(as_table([{"file": "c"}])).num_rows == 0 and len(list(out.glob("part-*"))) == 2
    table = pq.read_table(out)
    assert table.schema.names == CONTRACT and sorted(table.column("file").to_pylist()) == ["a", "b", "c"]
    # a part cut off by a kill (a hidden temporary file) is neither read nor kept
    (out / ".writing-part-x.parquet").write_bytes(b"PAR1 half")
    assert pq.read_table(out).num_rows == 3
    with pytest.raises(ValueError, match="already holds results; add --resume"):
        ResultsWriter(out)
    again = ResultsWriter(out, resume=True)
    assert again.done == {"a", "b", "c"} and not (out / ".writing-part-x.parquet").exists()
    # parts copied in by hand may repeat a film: read_results keeps the first
    pq.write_table(as_table([{"file": "a", "error": "later"}]), out / "part-zz-by-hand.parquet")
    assert pq.read_table(out).num_rows == 4 and read_results(out).num_rows == 3
    assert read_results(out).to_pydict()["error"][0] == "x"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        ResultsWriter(tmp_path / "file")


# ---------------------------------------------------------------- hostile films in a list
@pytest.fixture
def hostile(tmp_path, data_root):
    """A list of real films and files that are not: missing, empty, text named .jpeg, a truncated JPEG, a DICOM
    whose header claims 400 megapixels, a FIFO (reading it would block), a folder."""
    real = films(data_root, 4)
    jpeg = real[0].read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpeg").write_bytes(b"")
    (bad / "text.jpeg").write_text("not an image, just text\n")
    (bad / "truncated.jpeg").write_bytes(jpeg[: len(jpeg) // 3])
    (bad / "bomb.dcm").write_bytes(make_dicom(np.zeros((64, 64), np.uint8), rows_cols=(20000, 20000)))
    os.mkfifo(bad / "pipe.jpeg")
    (bad / "folder.jpeg").mkdir()
    names = [*map(str, real), "bad/missing.jpeg", "bad/empty.jpeg", "bad/text.jpeg", "bad/truncated.jpeg",
             "bad/bomb.dcm", "bad/pipe.jpeg", "bad/folder.jpeg"]
    (tmp_path / "films.txt").write_text("\n".join(names) + "\n")
    return tmp_path / "films.txt", real


def test_hostile_and_unreadable_films_each_get_a_row_with_their_error(hostile, tmp_path, capsys, shipped_predictor):
    listing, real = hostile
    out = tmp_path / "results"
    code, stdout, err = run(["score", str(listing), "--out", str(out), "--batch", "3", "--json"], capsys)
    assert code == 0 and "Traceback" not in err
    summary = json.loads(stdout)
    assert summary["films"] == summary["scored"] == 11 and summary["errors"] == 7 and summary["skipped"] == 0
    table = pq.read_table(out)
    assert table.schema == SCHEMA and table.num_rows == 11 and len(list(out.glob("part-*.parquet"))) == 4
    rows = {Path(r["file"]).name: r for r in table.to_pylist()}
    reasons = {"missing.jpeg": "file not found", "empty.jpeg": "empty", "text.jpeg": "plain text",
               "truncated.jpeg": "truncated or corrupt", "bomb.dcm": "megapixel limit",
               "pipe.jpeg": "not a regular file", "folder.jpeg": "is a folder"}
    for name, reason in reasons.items():
        row = rows[name]
        assert row["error"] and reason in row["error"] and "\n" not in row["error"], (name, row["error"])
        assert row["label"] is None and row["p_pneumonia"] is None and row["model"] == "finetuned"
    assert rows["text.jpeg"]["content_sha256"] == sha(listing.parent / "bad/text.jpeg")  # the bytes that were read
    assert rows["missing.jpeg"]["content_sha256"] is None and rows["pipe.jpeg"]["content_sha256"] is None
    for film in real:  # the real films scored as predict scores them, each with its hash and the model's
        row, want = rows[film.name], shipped_predictor.predict(film)
        assert row["file"] == str(film) and row["content_sha256"] == sha(film) and row["error"] is None
        assert row["label"] == want.label and row["p_pneumonia"] == pytest.approx(want.p_pneumonia, abs=1e-5)
        assert row["is_chest_xray"] is True and row["threshold"] == shipped_predictor.threshold
        assert row["model_sha256"] == shipped_predictor.sha256 and row["scored_at"].tzinfo is not None


def test_usage_errors_are_one_line(tmp_path, capsys, monkeypatch, test_normal):
    cases = [(["score", "--out", str(tmp_path / "o")], "give folders"),
             (["score", str(test_normal), "--out", str(tmp_path / "o"), "--study", "1.2"], "need --dicomweb"),
             (["score", str(test_normal), "--out", str(tmp_path / "o"), "--ray-address", "auto"], "needs --engine ray")]
    for argv, reason in cases:
        code, out, err = run(argv, capsys)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and reason in err, err
    # where Ray is not installed (the runtime), --engine ray says what to install, before any work
    monkeypatch.setattr("pneumo_core.scoring.engines.ray_available", lambda: False)
    code, out, err = run(["score", str(test_normal), "--out", str(tmp_path / "o"), "--engine", "ray"], capsys)
    assert code == 2 and err == "error: --engine ray needs Ray: pip install -r requirements-scale.txt (Ray Data)\n"
    assert not (tmp_path / "o").exists()


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log():
    class Stream(list):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

        def write(self, text):
            self.append(text)

        def flush(self):
            pass

    log, tty = Stream(False), Stream(True)
    for stream in (log, tty):
        progress = Progress(10, stream, every_s=3600)
        progress(Tally(4, 1))  # too soon for a log line
        progress(Tally(10, 2))  # the last one always shows
        progress.close()
    assert len(log) == 1 and log[0].startswith("progress: 10/10 films, 2 errors, ") and log[0].endswith(" films/s\n")
    assert tty[-2].startswith("\r[##############################] 10/10 films, 2 errors") and tty[-1] == "\n"


# ---------------------------------------------------------------- killed, then resumed
def test_a_job_killed_half_way_resumes_without_redoing_or_repeating(data_root, tmp_path):
    """A real ``score`` process over 240 films SIGKILLed once some parts exist; ``--resume`` scores exactly the
    rest, and every film is in the results exactly once."""
    listing = tmp_path / "films.txt"
    wanted = [str(f) for f in films(data_root, 240)]
    listing.write_text("\n".join(wanted) + "\n")
    out = tmp_path / "results"
    argv = [sys.executable, "-m", "pneumo_core", "score", str(listing), "--out", str(out), "--batch", "16", "--json"]
    job = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while len(list(out.glob("part-*.parquet"))) < 3 and job.poll() is None:
        subprocess.run(["sleep", "0.05"])
    assert job.poll() is None, f"the job ended before it could be killed: {job.communicate()}"
    job.send_signal(signal.SIGKILL)
    job.communicate()
    before = pq.read_table(out).column("file").to_pylist()
    assert 48 <= len(before) < 240 and len(set(before)) == len(before)

    resumed = subprocess.run([*argv, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped"] == len(before) and summary["scored"] == 240 - len(before) and summary["errors"] == 0
    after = pq.read_table(out).column("file").to_pylist()
    assert sorted(after) == sorted(wanted)  # every film, exactly once
    again = subprocess.run([*argv, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert json.loads(again.stdout)["scored"] == 0 and pq.read_table(out).num_rows == 240
