"""The CLI contract other tools rely on: ``python -m pneumo_core predict|evaluate --json``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pneumo_core", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def predict_output(tmp_path_factory, test_normal, test_pneumonia):
    tmp = tmp_path_factory.mktemp("cli")
    empty = tmp / "empty.png"
    empty.write_bytes(b"")
    html = tmp / "page.jpg"
    html.write_text("<!DOCTYPE html><html><body>not an image</body></html>")
    files = [test_normal, empty, test_pneumonia, html, tmp / "missing.png"]
    res = run_cli("predict", "--json", *files)
    return files, res


def test_predict_json_contract(predict_output):
    files, res = predict_output
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # stdout is pure JSON
    assert [o["file"] for o in out] == [str(f) for f in files]
    for o in out:
        assert {"file", "label", "p_pneumonia", "error"} <= set(o)
    good = [out[0], out[2]]
    for o in good:
        assert o["error"] is None
        assert o["label"] in ("NORMAL", "PNEUMONIA")
        assert isinstance(o["p_pneumonia"], float) and 0.0 <= o["p_pneumonia"] <= 1.0
        assert o["label"] == ("PNEUMONIA" if o["p_pneumonia"] >= o["threshold"] else "NORMAL")


def test_predict_bad_files_get_one_line_errors_and_do_not_stop_others(predict_output):
    _, res = predict_output
    out = json.loads(res.stdout)
    for o, word in [(out[1], "empty"), (out[3], "HTML"), (out[4], "not found")]:
        assert o["label"] is None and o["p_pneumonia"] is None
        assert word in o["error"] and "\n" not in o["error"]
    assert "Traceback" not in res.stderr


def test_predict_matches_library(predict_output, shipped_predictor, test_pneumonia):
    _, res = predict_output
    cli = json.loads(res.stdout)[2]
    lib = shipped_predictor.predict(test_pneumonia)
    assert cli["label"] == lib.label
    assert cli["p_pneumonia"] == pytest.approx(lib.p_pneumonia, abs=1e-5)


def test_predict_expands_folders(tmp_path, test_normal):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpeg").write_bytes(test_normal.read_bytes())
    (tmp_path / "readme.txt").write_text("skip me")
    res = run_cli("predict", "--json", "--model", "frozen", tmp_path)
    out = json.loads(res.stdout)
    assert len(out) == 1 and out[0]["file"].endswith("a.jpeg") and out[0]["error"] is None
    assert out[0]["model"] == "frozen"


def test_evaluate_json_on_a_small_split(tmp_path, data_root):
    import numpy as np

    from pneumo_core.evaluate import metrics_at
    from pneumo_core.infer import Predictor

    files = {}
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / cls).mkdir()
        files[cls] = sorted((data_root / "test" / cls).glob("*.jpeg"))[:6]
        for f in files[cls]:
            (tmp_path / cls / f.name).symlink_to(f)
    res = run_cli("evaluate", "--model", "frozen", "--data", tmp_path, "--json", "--bootstrap", "50")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "auc", "threshold", "n", "confusion_matrix"):
        assert key in out, key
    assert out["n"] == 12
    pred = Predictor("frozen")
    p = [pred.predict(f).p_pneumonia for cls in ("NORMAL", "PNEUMONIA") for f in files[cls]]
    ref = metrics_at(np.array([0] * 6 + [1] * 6), np.array(p), pred.threshold)
    for key in ("accuracy", "auc", "specificity"):
        assert out[key] == pytest.approx(ref[key], abs=1e-6)
    assert out["confusion_matrix"] == ref["confusion_matrix"]


def _one_line_error(res, *words):
    """A user error: exit status 2 and one ``error:`` line on stderr naming the problem."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    line = [ln for ln in res.stderr.splitlines() if "error:" in ln]
    assert line, res.stderr
    for word in words:
        assert word in line[-1], (word, line[-1])


def test_evaluate_refuses_a_folder_without_classes(tmp_path):
    _one_line_error(run_cli("evaluate", "--data", tmp_path, "--json"), "neither a split folder")
    _one_line_error(run_cli("evaluate", "--data", tmp_path / "nope", "--json"), "neither a split folder")


def test_evaluate_on_a_dataset_root_without_bootstrap(tmp_path, data_root):
    """A dataset root means its test/ split; --bootstrap 0 gives metrics without CIs, as valid JSON."""
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "test" / cls).mkdir(parents=True)
        for f in sorted((data_root / "test" / cls).glob("*.jpeg"))[:3]:
            (tmp_path / "test" / cls / f.name).symlink_to(f)
    res = run_cli("evaluate", "--model", "frozen", "--data", tmp_path, "--json", "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n"] == 6 and out["data"] == str(tmp_path / "test")
    assert out["ci95"] is None and 0.0 <= out["auc"] <= 1.0


def test_evaluate_refuses_a_one_class_split(tmp_path, test_normal):
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "PNEUMONIA").mkdir()
    (tmp_path / "NORMAL" / "a.jpeg").symlink_to(test_normal)
    _one_line_error(run_cli("evaluate", "--model", "frozen", "--data", tmp_path, "--json"),
                    "both classes", "0 PNEUMONIA")


@pytest.mark.parametrize("args, words", [
    (["--threshold", "nan"], ["--threshold", "from 0 to 1"]),
    (["--threshold", "7"], ["--threshold", "from 0 to 1"]),
    (["--batch-size", "0"], ["--batch-size", "at least 1"]),
])
def test_out_of_range_options_are_refused_before_any_work(args, words, test_normal):
    res = run_cli("predict", "--json", *args, test_normal)
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    for word in words:
        assert word in res.stderr


def test_a_keras_file_that_is_not_a_classifier_is_refused(tmp_path, test_normal):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip archive")
    _one_line_error(run_cli("predict", "--model", tmp_path / "other.keras", test_normal), "not one of this workbench")
    _one_line_error(run_cli("predict", "--model", tmp_path / "garbage.keras", test_normal), "not a Keras model file")


def test_a_model_without_its_reports_says_it_uses_0_5(tmp_path, test_normal, test_pneumonia):
    """A model copied without reports/ has no validation threshold: the CLI says so instead of
    presenting 0.5 as the validation rule."""
    import shutil

    shutil.copy(ROOT / "models" / "frozen.keras", tmp_path / "frozen.keras")
    res = run_cli("predict", "--json", "--model", tmp_path / "frozen.keras", test_normal)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["threshold"] == 0.5
    assert "warning: threshold 0.5 by default" in res.stderr


def test_missing_model_is_a_clear_error(tmp_path, test_normal):
    res = run_cli("predict", "--model", tmp_path / "nope.keras", test_normal)
    assert res.returncode == 2
    assert "model file not found" in res.stderr and "Traceback" not in res.stderr


def test_rethreshold_rederives_the_threshold_from_saved_validation_scores(tmp_path):
    """After a change of rule, `rethreshold` recomputes threshold and presets from the saved
    validation scores alone: no data folder, no model run, no test split."""
    import shutil

    import pandas as pd

    from pneumo_core.evaluate import choose_threshold

    reports = tmp_path / "reports" / "frozen"
    shutil.copytree(ROOT / "models" / "reports" / "frozen", reports)
    training = json.loads((reports / "training.json").read_text())
    (reports / "training.json").write_text(json.dumps({**training, "threshold": 0.123}))
    res = run_cli("rethreshold", "--model", tmp_path / "frozen.keras")
    assert res.returncode == 0, res.stderr
    val = pd.read_csv(reports / "validation_predictions.csv")
    want = choose_threshold(val.label, val.p_pneumonia)
    assert json.loads(res.stdout)["threshold"] == pytest.approx(want)
    assert json.loads((reports / "training.json").read_text())["threshold"] == pytest.approx(want)
    _one_line_error(run_cli("rethreshold", "--model", tmp_path / "other.keras"), "rethreshold needs")
