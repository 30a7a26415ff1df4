"""The runtime without TensorFlow: a venv made from requirements.txt alone (``make lean-venv``, whose
interpreter ``PNEUMO_LEAN_PYTHON`` names; ``make test`` builds it and sets it) cannot import TensorFlow or
Keras, scores the bundled films and the official test split as the shipped reports say, and serves every
dashboard page to a real browser, labelling an uploaded film."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.browser import ROOT, app_in_browser, require_browser, shots
from tests.helpers.support import require

ARTIFACTS = ROOT / "test-artifacts" / "lean"
EXAMPLES = ROOT / "assets" / "examples"


@pytest.fixture(scope="module")
def lean_python() -> str:
    python = os.environ.get("PNEUMO_LEAN_PYTHON", "")
    require(bool(python) and Path(python).is_file(),
            "no lean venv: run `make lean-venv` and set PNEUMO_LEAN_PYTHON=.venv-lean/bin/python (make test does)")
    return python


def run_lean(python: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PNEUMO_BACKEND", "PYTHONPATH")}
    return subprocess.run([python, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_lean_venv_has_no_tensorflow(lean_python):
    for module in ("tensorflow", "keras"):
        probe = run_lean(lean_python, "-c", "import importlib.util, sys; "
                                            f"sys.exit(importlib.util.find_spec({module!r}) is not None)")
        assert probe.returncode == 0, f"{module} is importable in the lean venv"
    training = run_lean(lean_python, "-m", "pneumo_core", "train", "--variant", "frozen", "--data", "nowhere")
    assert training.returncode == 2 and training.stderr.strip().splitlines()[-1].startswith("error: "), training.stderr
    assert "requirements-train.txt" in training.stderr and "Traceback" not in training.stderr


#: The issue's bound on the runtime venv's site-packages (docs/benchmarks.md, "Install size").
RUNTIME_MB = 600


def test_the_lean_venv_fits_in_600_mb_even_fully_compiled(lean_python):
    """``make`` installs the runtime with ``--no-compile``; a plain ``pip install -r requirements.txt`` writes bytecode
    for every module. Compiling all of site-packages here makes the venv as large as that, then it must still fit."""
    where = run_lean(lean_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    site = Path(where.stdout.strip())
    assert site.is_dir(), where.stderr
    run_lean(lean_python, "-m", "compileall", "-q", "-j", "0", str(site))  # a few test files of packages fail: fine
    assert next(site.glob("pandas/core/__pycache__/frame.*.pyc"), None), "compileall wrote no bytecode"
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
    assert size <= RUNTIME_MB * 2**20, f"runtime site-packages {size / 2**20:.0f} MB > {RUNTIME_MB} MB"
    assert not (site / "plotly").exists() and not (site / "tensorflow").exists()


def test_lean_predict_gives_the_saved_scores_of_the_bundled_films(lean_python):
    saved = pd.read_csv(EXAMPLES / "examples.csv").set_index("file")
    films = sorted(str(p.relative_to(ROOT)) for p in EXAMPLES.glob("*.jpeg"))
    out = run_lean(lean_python, "-m", "pneumo_core", "predict", "--json", *films)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    assert len(rows) == len(films) == len(saved)
    for row in rows:
        expected = saved.loc[Path(row["file"]).name]
        assert row["error"] is None and row["is_chest_xray"] is True, row
        assert row["p_pneumonia"] == pytest.approx(expected["p_finetuned"], abs=1e-3), row
        assert row["label"] == ("PNEUMONIA" if expected["p_finetuned"] >= row["threshold"] else "NORMAL"), row


def test_lean_predict_reproduces_the_official_test_predictions(lean_python, data_root):
    saved = pd.read_csv(ROOT / "models" / "reports" / "finetuned" / "test_predictions.csv").set_index("file")
    out = run_lean(lean_python, "-m", "pneumo_core", "predict", "--json", str(data_root / "test"))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = pd.DataFrame(json.loads(out.stdout))
    rows["name"] = rows["file"].map(lambda f: Path(f).name)
    rows = rows.set_index("name").loc[saved.index]
    assert len(rows) == 624 and rows["error"].isna().all() and rows["is_chest_xray"].all()
    assert (rows["p_pneumonia"] - saved["p_pneumonia"]).abs().max() <= 1e-3
    labels = (rows["label"] == "PNEUMONIA").astype(int)
    assert (labels == saved["predicted"]).all(), rows[labels != saved["predicted"]].head()


def test_every_page_and_an_upload_on_the_lean_runtime(lean_python, tmp_path, monkeypatch, test_pneumonia):
    require_browser()
    from ui import navigation

    monkeypatch.delenv("PNEUMO_BACKEND", raising=False)
    monkeypatch.setenv("PNEUMO_DB_URL", f"sqlite:///{tmp_path / 'quiz.sqlite3'}")
    saved = pd.read_csv(ROOT / "models" / "reports" / "finetuned" / "test_predictions.csv").set_index("file")
    expected = "PNEUMONIA" if saved.loc[test_pneumonia.name, "predicted"] == 1 else "NORMAL"
    with app_in_browser(ARTIFACTS, python=lean_python) as (server, page, errors):
        for name, entry in navigation.PAGES.items():
            page.goto(f"{server.url}/{entry.url_path}")
            shots.wait_page_idle(page)
            assert page.get_by_text("not a diagnostic device").first.is_visible(), name
            assert "Traceback" not in page.content(), name
            assert not re.search(r"ModuleNotFoundError|No module named", page.content()), name
        page.goto(f"{server.url}/analyse")
        shots.wait_page_idle(page)
        assert shots.upload_and_wait(page, test_pneumonia) == expected
        assert page.get_by_text("Grad-CAM overlay, opacity").first.is_visible()
        page.screenshot(path=str(ARTIFACTS / "lean_upload.png"), full_page=True)
        assert not errors, errors
    log = server.stderr_path.read_text(errors="replace")  # LiteRT's one INFO line names "TensorFlow Lite"
    assert "tensorflow" not in log.lower().replace("tensorflow lite", ""), log[-2000:]
