"""No committed file under models/ and docs/, nor the README, holds an absolute path of the machine that
wrote it; the writers record paths relative to the data root or the checkout, and the readers resolve them
(pneumo_core.recorded_paths)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumo_core import recorded_paths as rp
from pneumo_core.config import PROJECT_DIR

SCANNED = ("models", "docs", "README.md")
BINARY = {".keras", ".npz", ".h5", ".png", ".jpg", ".jpeg", ".tflite", ".dcm", ".sqlite3"}
#: An absolute path of a machine: a POSIX path under a machine's top folders (after a space, a quote, a
#: bracket, ``=`` or ``:``... but not inside a URL or a relative path), a Windows drive path, a file URL, and
#: a database URL's absolute file (``sqlite:////tmp/x.db``: the fourth slash hides it from the first pattern).
MACHINE_PATH = re.compile(
    r"(?<![\w.~$/-])/(?:work|workspace|root|tmp|home|Users|mnt|media|opt|srv|var|scratch|private|Volumes|data|"
    r"content|builds|runner)(?=/|\b)"
    r"|(?<![\w])[A-Za-z]:(?:\\\\|\\|/)(?=[\w.-])"
    r"|file:///"
    r"|\w:////(?=[\w.-])"
)


def scanned_files(root: Path) -> list[Path]:
    """The committed text files under ``root``'s models/ and docs/, and its README (every file there when
    ``root`` is not a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *SCANNED], cwd=root, capture_output=True,
                                check=True, timeout=60).stdout.decode().split("\0")
        files = [root / f for f in listed if f]
    except (OSError, subprocess.SubprocessError):
        files = []
    if not files:
        files = [p for name in SCANNED for p in ([root / name] if (root / name).is_file()
                                                 else sorted((root / name).rglob("*")))]
    return [f for f in files if f.is_file() and f.suffix.lower() not in BINARY]


def machine_paths(root: Path) -> list[str]:
    """``file:line: text`` for every absolute machine path in :func:`scanned_files`."""
    found = []
    for path in scanned_files(root):
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(root)}:{n}: {line.strip()[:160]}")
    return found


def test_no_committed_file_holds_an_absolute_machine_path():
    found = machine_paths(PROJECT_DIR)
    assert not found, ("absolute paths of a machine in committed files (record them relative to the data root "
                       "or the checkout, pneumo_core.recorded_paths):\n" + "\n".join(found))


def test_the_scan_finds_a_planted_path_and_names_file_and_line(tmp_path):
    for name in ("docs", "models/reports/frozen"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "README.md").write_text("fine\nsee /home/someone/x.md\nPNEUMO_DB_URL=sqlite:////srv/x.sqlite3\n"
                                        "PNEUMO_DB_URL=sqlite:///dev.sqlite3\n")
    (tmp_path / "docs" / "a.md").write_text("`../shared/data/chest_xray`, $PNEUMO_DATA_DIR/test, http://h/work/x,\n"
                                            "runs/tmp/x, /proc/stat\n")
    (tmp_path / "models/reports/frozen/training.json").write_text(json.dumps(
        {"data": "$PNEUMO_DATA_DIR", "out": "/work/main/runs/x", "w": "C:\\Users\\me\\w.h5"}, indent=2))
    (tmp_path / "models/reports/frozen/ood.npz").write_bytes(b"/work/binary\0")  # binary: not read
    found = machine_paths(tmp_path)
    assert sorted(found) == ["README.md:2: see /home/someone/x.md", "README.md:3: PNEUMO_DB_URL=sqlite:////srv/x.sqlite3",
                     'models/reports/frozen/training.json:3: "out": "/work/main/runs/x",',
                     'models/reports/frozen/training.json:4: "w": "C:\\\\Users\\\\me\\\\w.h5"'], found


def test_a_path_planted_in_a_copy_of_the_committed_files_is_found(tmp_path):
    for path in scanned_files(PROJECT_DIR):
        (tmp_path / path.relative_to(PROJECT_DIR)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, tmp_path / path.relative_to(PROJECT_DIR))
    assert machine_paths(tmp_path) == []  # the copy (not a git checkout: every file is read) is clean
    record = tmp_path / "models/experiments/protocols/official/frozen/training.json"
    lines = record.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if '"root":' in line)
    lines[n] = lines[n].replace("$PNEUMO_DATA_DIR", "/work/shared/data/chest_xray")
    record.write_text("\n".join(lines) + "\n")
    doc = tmp_path / "docs" / "evaluation.md"
    doc.write_text(doc.read_text() + "\nSee /root/.cache/x.\n")
    found = machine_paths(tmp_path)
    assert sorted(f.split(": ")[0] for f in found) == [
        f"docs/evaluation.md:{len(doc.read_text().splitlines())}",
        f"models/experiments/protocols/official/frozen/training.json:{n + 1}"], found


# ---------------------------------------------------------------------------- the convention
@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "chest_xray"
    (root / "test" / "NORMAL").mkdir(parents=True)
    monkeypatch.setenv("PNEUMO_DATA_DIR", str(root))
    return root


def test_record_path_uses_the_data_root_then_the_checkout(data_root, tmp_path, monkeypatch):
    assert rp.record_path(data_root) == "$PNEUMO_DATA_DIR"
    assert rp.record_path(data_root / "test") == "$PNEUMO_DATA_DIR/test"
    assert rp.record_path(PROJECT_DIR / "runs" / "x") == "runs/x"
    assert rp.record_path(PROJECT_DIR.parent / "shared" / "weights" / "w.h5") == "../shared/weights/w.h5"
    outside = Path("/nonexistent-root-for-test/x")
    assert rp.record_path(outside) == str(outside)  # left absolute: the committed-files scan refuses it
    monkeypatch.chdir(data_root)
    assert rp.record_path("test") == "$PNEUMO_DATA_DIR/test"  # relative to the working folder
    for recorded in ("$PNEUMO_DATA_DIR", "$PNEUMO_DATA_DIR/test", "runs/x", "../shared/weights/w.h5"):
        assert rp.record_path(rp.resolve(recorded)) == recorded
    assert rp.resolve("$PNEUMO_DATA_DIR/test") == data_root / "test"
    assert rp.resolve("models/frozen.keras") == PROJECT_DIR / "models" / "frozen.keras"
    assert rp.resolve(str(outside)) == outside


def test_record_text_rewrites_the_paths_of_a_command_and_nothing_else(data_root):
    cmd = (f"python -m pneumo_core train --data {data_root} --out {PROJECT_DIR}/runs/protocols/x "
           f"--weights={PROJECT_DIR.parent}/shared/w.h5 --seed 1 http://host/work/x 80/10/10")
    assert rp.record_text(cmd) == ("python -m pneumo_core train --data $PNEUMO_DATA_DIR --out runs/protocols/x "
                                   "--weights=../shared/w.h5 --seed 1 http://host/work/x 80/10/10")
    assert rp.record_text(f"official test part (split seed 42) of {data_root}.") == (
        "official test part (split seed 42) of $PNEUMO_DATA_DIR.")


def test_record_walks_a_training_record(data_root):
    info = {"command": f"train --data {data_root}", "model_file": "finetuned.keras",
            "config": {"data": str(data_root), "weights": "imagenet", "out": str(PROJECT_DIR / "models")},
            "data": {"root": str(data_root / "train"), "train_images": 3},
            "ensemble": {"members": [{"file": str(PROJECT_DIR.parent / "soup" / "m1" / "finetuned.keras")}]}}
    assert rp.record(info) == {
        "command": "train --data $PNEUMO_DATA_DIR", "model_file": "finetuned.keras",
        "config": {"data": "$PNEUMO_DATA_DIR", "weights": "imagenet", "out": "models"},
        "data": {"root": "$PNEUMO_DATA_DIR/train", "train_images": 3},
        "ensemble": {"members": [{"file": "../soup/m1/finetuned.keras"}]}}


def test_write_report_records_the_data_path_relative_to_the_data_root(data_root, tmp_path):
    from pneumo_core.evaluation.metrics import write_report

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 10)
    preds = pd.DataFrame({"file": [f"f{i}.jpeg" for i in range(20)], "patient": [f"p{i}" for i in range(20)],
                          "label": labels, "p_pneumonia": np.clip(labels * 0.5 + rng.random(20) * 0.5, 0, 1)})
    for given, recorded in ((str(data_root / "test"), "$PNEUMO_DATA_DIR/test"),
                            (f"image-resplit test part (split seed 42) of {data_root}",
                             "image-resplit test part (split seed 42) of $PNEUMO_DATA_DIR")):
        out = tmp_path / "report"
        write_report(out, preds, 0.5, {"model": "m", "data": given}, n_boot=0)
        assert json.loads((out / "metrics.json").read_text())["data"] == recorded


def test_wise_ft_reopens_the_recorded_data_root_on_this_machine(data_root, tmp_path, monkeypatch):
    """``wise-ft`` takes the dataset root from the run's training.json, where it is recorded as
    ``$PNEUMO_DATA_DIR``: the split it validates on is read from this machine's root."""
    from pneumo_core.training import combine

    run = tmp_path / "run" / "finetuned.keras"
    reports = run.parent / "reports" / "finetuned"
    reports.mkdir(parents=True)
    run.write_bytes(b"")
    (reports / combine.HEAD_START).write_bytes(b"")
    (reports / "training.json").write_text(json.dumps(
        {"variant": "finetuned", "config": {"variant": "finetuned", "data": "$PNEUMO_DATA_DIR", "split_seed": 7}}))
    seen = []

    def split(cfg):
        seen.append(cfg.data)
        raise LookupError("stop before any model is built")

    monkeypatch.setattr(combine, "training_split", split)
    with pytest.raises(LookupError):
        combine.wise_ft(run, tmp_path / "out")
    assert seen == [str(data_root)]
