"""The CLI contract other tools rely on: ``python -m pneumo_core predict|evaluate --json``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pneumo_core.inference.model_files import write_manifest

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_predict_expands_folders(tmp_path, test_normal):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpeg").write_bytes(test_normal.read_bytes())
    (tmp_path / "readme.txt").write_text("skip me")
    res = run_cli("predict", "--json", "--model", "frozen", tmp_path)
    out = json.loads(res.stdout)
    assert len(out) == 1 and out[0]["file"].endswith("a.jpeg") and out[0]["error"] is None
    assert out[0]["model"] == "frozen"


@pytest.mark.slow
def test_evaluate_json_on_a_small_split(tmp_path, data_root):
    import numpy as np

    from pneumo_core.evaluation.metrics import metrics_at
    from pneumo_core.inference.predictor import Predictor

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_keras_file_that_is_not_a_classifier_is_refused(tmp_path, test_normal):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip archive")
    write_manifest(tmp_path)  # recorded, so the check that follows is the file's content
    _one_line_error(run_cli("predict", "--model", tmp_path / "other.keras", test_normal), "not one of this workbench")
    _one_line_error(run_cli("predict", "--model", tmp_path / "garbage.keras", test_normal), "not a Keras model file")


@pytest.mark.slow
def test_a_model_without_its_reports_says_it_uses_0_5(tmp_path, test_normal, test_pneumonia):
    """A model copied without reports/ has no validation threshold: the CLI says so instead of
    presenting 0.5 as the validation rule."""
    import shutil

    shutil.copy(ROOT / "models" / "frozen.keras", tmp_path / "frozen.keras")
    write_manifest(tmp_path)
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

    from pneumo_core.evaluation.metrics import choose_threshold

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


# ------------------------------------------------ paths that had no test: write-report, --threshold, ood, manifest
def _small_split(root, data_root, n=6):
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True)
        for f in sorted((data_root / "test" / cls).glob("*.jpeg"))[:n]:
            (root / cls / f.name).symlink_to(f)
    return root


def _models_copy(tmp_path, variant="frozen", with_reports=True):
    """A models folder holding one shipped model, its training record and (optionally) its OOD
    detector, with a manifest of its own, so nothing under models/ is touched."""
    import shutil

    models = tmp_path / "models"
    (models / "reports" / variant).mkdir(parents=True)
    shutil.copy(ROOT / "models" / f"{variant}.keras", models)
    keep = ("training.json", "validation_predictions.csv", "ood.npz") if with_reports else ()
    for name in keep:
        shutil.copy(ROOT / "models" / "reports" / variant / name, models / "reports" / variant)
    write_manifest(models)
    return models


def test_evaluate_write_report_end_to_end(tmp_path, data_root, capsys):
    """``evaluate --write-report`` into a models folder: metrics.json is the metrics of the
    written CSV, ``predicted`` is p >= threshold, the ROC points are monotone, the scores are the
    shipped evaluation's, and the folder then reads back as an available report."""
    import numpy as np
    import pandas as pd

    from pneumo_core.cli import main
    from pneumo_core.evaluation.metrics import metrics_at
    from pneumo_core.evaluation.reports import load_report

    models = _models_copy(tmp_path)
    report_dir = models / "reports" / "frozen"
    assert not load_report("frozen", models).available  # no metrics, predictions, ROC yet
    split = _small_split(tmp_path / "split", data_root)
    assert main(["evaluate", "--model", str(models / "frozen.keras"), "--data", str(split), "--json",
                 "--bootstrap", "20", "--write-report", str(report_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((report_dir / "metrics.json").read_text())
    preds = pd.read_csv(report_dir / "test_predictions.csv")
    roc = pd.read_csv(report_dir / "roc_curve.csv")
    threshold = json.loads((report_dir / "training.json").read_text())["threshold"]

    assert len(preds) == 12 and metrics["counts"] == {"NORMAL": 6, "PNEUMONIA": 6}
    assert metrics["at_threshold"]["threshold"] == pytest.approx(threshold)
    assert (preds.predicted == (preds.p_pneumonia >= threshold).astype(int)).all()
    for which, t in (("at_threshold", threshold), ("at_0.5", 0.5)):
        want = metrics_at(preds.label.to_numpy(), preds.p_pneumonia.to_numpy(), t)
        for key in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
            assert metrics[which][key] == pytest.approx(want[key], abs=1e-9), (which, key)
        assert metrics[which]["confusion_matrix"] == want["confusion_matrix"]
    assert printed["accuracy"] == pytest.approx(metrics["at_threshold"]["accuracy"])
    assert printed["threshold_rule"] == metrics["threshold_rule"] and "sensitivity" in metrics["threshold_rule"]
    # ROC: from (0, 0) to (1, 1), never stepping back; its area is the reported AUC
    assert (np.diff(roc.fpr) >= 0).all() and (np.diff(roc.tpr) >= 0).all() and (np.diff(roc.threshold) <= 0).all()
    assert (roc.fpr.iloc[0], roc.tpr.iloc[0]) == (0, 0) and (roc.fpr.iloc[-1], roc.tpr.iloc[-1]) == (1, 1)
    assert np.trapezoid(roc.tpr, roc.fpr) == pytest.approx(metrics["at_threshold"]["auc"], abs=1e-9)
    # the scores are the shipped model's, as in its own saved evaluation of the whole test split
    shipped = pd.read_csv(ROOT / "models" / "reports" / "frozen" / "test_predictions.csv")
    shipped = shipped.assign(name=[Path(f).name for f in shipped.file]).set_index("name").p_pneumonia
    np.testing.assert_allclose(preds.p_pneumonia, shipped.loc[[Path(f).name for f in preds.file]], atol=1e-3)
    rep = load_report("frozen", models)
    assert rep.available and rep.missing == [] and rep.test_n == 12
    assert len(rep.test_predictions) == 12 and rep.metrics == metrics


@pytest.mark.slow
def test_a_given_threshold_is_applied_and_recorded_as_given(tmp_path, data_root, test_normal, capsys):
    """``--threshold`` decides the label (a cut just above or just below a film's p flips it)
    and reports say the threshold was given, not chosen on validation."""
    import pandas as pd

    from pneumo_core.cli import main

    def predict(*extra):
        assert main(["predict", "--json", "--model", "frozen", *extra, str(test_normal)]) == 0
        return json.loads(capsys.readouterr().out)[0]

    p = predict()["p_pneumonia"]
    assert 0.002 < p < 0.998
    above, below = predict("--threshold", str(p + 0.001)), predict("--threshold", str(p - 0.001))
    assert above["label"] == "NORMAL" and above["threshold"] == pytest.approx(p + 0.001)
    assert below["label"] == "PNEUMONIA" and below["threshold"] == pytest.approx(p - 0.001)

    split = _small_split(tmp_path / "split", data_root, n=3)
    assert main(["evaluate", "--model", "frozen", "--data", str(split), "--threshold", "0.3", "--bootstrap", "0",
                 "--json", "--write-report", str(tmp_path / "report")]) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    preds = pd.read_csv(tmp_path / "report" / "test_predictions.csv")
    assert printed["threshold_rule"] == metrics["threshold_rule"] == "given on the command line"
    assert metrics["at_threshold"]["threshold"] == pytest.approx(0.3)
    assert (preds.predicted == (preds.p_pneumonia >= 0.3).astype(int)).all()


@pytest.mark.slow
def test_calibrate_ood_fits_and_records_a_detector(tmp_path, data_root, capsys):
    """``calibrate-ood`` on a small training folder: a new ood.npz, its SHA-256 in the manifest
    (the next load accepts it), its settings in training.json, and a detector that passes the
    training films and flags a photograph."""
    import numpy as np
    import skimage.data

    from pneumo_core.cli import main
    from pneumo_core.inference.model_files import sha256_file
    from pneumo_core.inference.ood import MahalanobisOOD
    from pneumo_core.inference.predictor import Predictor

    models = _models_copy(tmp_path)
    detector = models / "reports" / "frozen" / "ood.npz"
    detector.unlink()
    train = tmp_path / "data" / "train"
    for cls in ("NORMAL", "PNEUMONIA"):
        (train / cls).mkdir(parents=True)
        for f in sorted((data_root / "train" / cls).glob("*.jpeg"))[:30]:
            (train / cls / f.name).symlink_to(f)
    assert main(["calibrate-ood", "--model", str(models / "frozen.keras"), "--data", str(tmp_path / "data")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert detector.is_file() and np.isfinite(printed["threshold"]) and printed["threshold"] > 0
    manifest = json.loads((models / "MANIFEST.json").read_text())
    assert manifest["ood_detectors"]["reports/frozen/ood.npz"]["sha256"] == sha256_file(detector)
    record = json.loads((models / "reports" / "frozen" / "training.json").read_text())["ood"]
    assert record["threshold"] == pytest.approx(printed["threshold"]) and "recalibrated_at" in record
    assert MahalanobisOOD.load(detector).threshold == pytest.approx(printed["threshold"])
    pred = Predictor(models / "frozen.keras")  # verified against the updated manifest
    assert pred.ood.threshold == pytest.approx(printed["threshold"])
    film = sorted((train / "NORMAL").iterdir())[0]
    assert pred.predict(film).is_chest_xray
    import io

    from PIL import Image

    photo = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(photo, "PNG")
    assert pred.predict(photo.getvalue(), name="astronaut.png").is_chest_xray is False


@pytest.mark.slow
def test_manifest_command_records_models_and_detectors_and_catches_tampering(tmp_path, capsys):
    """``manifest --dir`` writes the SHA-256 of each model and detector; a changed model or a
    changed detector is then refused on load, each with its own message."""
    from pneumo_core.cli import main
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.model_files import sha256_file
    from pneumo_core.inference.predictor import Predictor

    models = _models_copy(tmp_path)
    (models / "MANIFEST.json").unlink()
    assert main(["manifest", "--dir", str(models)]) == 0
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads((models / "MANIFEST.json").read_text())
    assert printed == on_disk
    assert on_disk["models"]["frozen.keras"]["sha256"] == sha256_file(models / "frozen.keras")
    assert on_disk["ood_detectors"]["reports/frozen/ood.npz"]["sha256"] == sha256_file(
        models / "reports" / "frozen" / "ood.npz")
    Predictor(models / "frozen.keras")  # loads cleanly

    detector = models / "reports" / "frozen" / "ood.npz"
    original = detector.read_bytes()
    detector.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # one flipped byte
    with pytest.raises(ModelLoadError, match="ood.npz does not match the SHA-256"):
        Predictor(models / "frozen.keras")
    res = run_cli("predict", "--model", models / "frozen.keras", ROOT / "assets" / "examples")
    _one_line_error(res, "ood.npz does not match")
    detector.write_bytes(original)
    model = models / "frozen.keras"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="frozen.keras does not match the SHA-256"):
        Predictor(model)


# ------------------------------------------------ the package: one entry point, argparse only here, train options
@pytest.mark.slow
def test_the_console_script_is_the_same_cli(tmp_path):
    """``pneumo`` (the console script ``pip install -e .`` makes) prints what ``python -m pneumo_core``
    prints, byte for byte, and exits the same."""
    script = Path(sys.executable).parent / "pneumo"
    if not script.is_file():
        pytest.skip("no pneumo console script beside this Python (pip install -e . makes it)")
    film = ROOT / "assets" / "examples" / "ex01.jpeg"  # a bundled teaching film
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    as_module = run_cli("predict", "--json", film)
    as_script = subprocess.run([str(script), "predict", "--json", str(film)], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
    assert as_module.returncode == as_script.returncode == 0, (as_module.stderr, as_script.stderr)
    assert as_script.stdout == as_module.stdout and json.loads(as_script.stdout)[0]["error"] is None
    for argv in (["predict", "--json"], ["quiz", "new", "--films", "0"]):  # a refusal and a usage error
        module_res = run_cli(*argv)
        script_res = subprocess.run([str(script), *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                                    timeout=300)
        assert (script_res.returncode, script_res.stdout) == (module_res.returncode, module_res.stdout) == (2, "")
        assert script_res.stderr.splitlines()[-1] == module_res.stderr.splitlines()[-1]


def test_argparse_is_imported_only_in_the_cli_package():
    """Library functions take plain arguments and return results; only ``pneumo_core/cli/`` parses a command line."""
    import ast

    from tests.helpers.support import parse  # retries CPython 3.11's spurious SystemError (gh-106905)

    found = []
    for path in sorted((ROOT / "pneumo_core").rglob("*.py")):
        if path.relative_to(ROOT / "pneumo_core").parts[0] == "cli":
            continue
        for node in ast.walk(parse(path)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno}" for name in names if name.split(".")[0] == "argparse"]
    assert not found, found
    assert (ROOT / "pneumo_core" / "cli" / "__init__.py").is_file() and not (ROOT / "pneumo_core" / "cli.py").exists()


def test_train_options_replace_only_the_defaults_they_name(monkeypatch):
    """Each of the train options given replaces its TrainConfig field (the augmentation ones after
    --augment-scale); those not given keep the defaults."""
    from dataclasses import asdict

    from pneumo_core.cli import main
    from pneumo_core.training.data import Augment
    from pneumo_core.training.trainer import TrainConfig

    seen = []
    monkeypatch.setattr("pneumo_core.training.trainer.train", lambda cfg, command: seen.append((cfg, command)))
    base = ["train", "--variant", "finetuned", "--data", "d", "--weights", "imagenet"]
    assert main(base) == 0
    default = TrainConfig(variant="finetuned", data="d", weights="imagenet")
    assert seen[-1][0] == default and seen[-1][1].startswith("python -m pneumo_core ")
    assert main([*base, "--lr", "1e-4", "--lr-schedule", "cosine", "--patience", "3", "--epochs", "5",
                 "--head-epochs", "7", "--augment-scale", "2", "--crop", "0.3", "--aspect", "0.2"]) == 0
    cfg = seen[-1][0]
    assert (cfg.fine_tune_lr, cfg.lr_schedule, cfg.patience, cfg.epochs, cfg.head_epochs) == (1e-4, "cosine", 3, 5, 7)
    scaled = {k: v * 2 for k, v in asdict(Augment()).items()}
    assert cfg.augment == {**scaled, "jpeg": min(1.0, scaled["jpeg"]), "crop": 0.3, "aspect": 0.2}
    assert main([*base, "--jpeg", "0"]) == 0
    assert seen[-1][0].augment == {**asdict(Augment()), "jpeg": 0.0} and seen[-1][0].epochs == default.epochs


# ------------------------------------------------ docs: regenerate the generated documentation, or check it
def test_docs_check_lists_stale_files_and_docs_rewrites_them(monkeypatch, capsys):
    """``docs --check``: exit 1 and one ``stale:`` line per stale file, 0 when current; ``docs``
    prints each file it rewrote (here with a stand-in for the generator)."""
    from types import SimpleNamespace

    from pneumo_core.cli import main
    from pneumo_core.cli.docs import GENERATOR

    stale = ["docs/protocols.md", "docs/evaluation.md"]

    def write_all():
        written = list(stale)
        stale.clear()
        return written

    def unreadable():
        raise FileNotFoundError("docs/protocols.md")

    fake = SimpleNamespace(stale_files=lambda: list(stale), write_all=write_all)
    monkeypatch.setitem(sys.modules, GENERATOR, fake)
    assert main(["docs", "--check"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "stale: docs/protocols.md", "stale: docs/evaluation.md",
        "2 generated file(s) out of date: run python -m pneumo_core docs"]
    assert main(["docs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["rewrote docs/protocols.md", "rewrote docs/evaluation.md"]
    assert main(["docs", "--check"]) == 0 and capsys.readouterr().out == "generated docs are current\n"
    assert main(["docs"]) == 0 and capsys.readouterr().out == "generated docs are current\n"
    fake.stale_files = unreadable
    assert main(["docs", "--check"]) == 2  # a missing file: the one error line
    assert capsys.readouterr().err.startswith("error: docs/protocols.md")


def test_docs_falls_back_to_the_protocols_page_without_the_generator(monkeypatch, tmp_path, capsys):
    """Without pneumo_core.evaluation.generated_docs, ``docs`` regenerates docs/protocols.md alone, as
    ``python -m pneumo_core.evaluation.protocol_markdown --write docs/protocols.md`` did."""
    from pneumo_core.cli import main
    from pneumo_core.cli.docs import GENERATOR
    from pneumo_core.evaluation import protocol_markdown as markdown

    monkeypatch.setitem(sys.modules, GENERATOR, None)  # as if the module did not exist
    monkeypatch.setattr("pneumo_core.config.PROJECT_DIR", tmp_path)
    doc = tmp_path / "docs" / "protocols.md"
    doc.parent.mkdir()
    doc.write_text(f"intro\n{markdown.START}\nold\n{markdown.END}\noutro\n")
    assert main(["docs", "--check"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == "stale: docs/protocols.md"
    assert doc.read_text() == f"intro\n{markdown.START}\nold\n{markdown.END}\noutro\n"  # --check writes nothing
    assert main(["docs"]) == 0 and capsys.readouterr().out == "rewrote docs/protocols.md\n"
    assert doc.read_text() == f"intro\n{markdown.START}\n{markdown.report_markdown()}{markdown.END}\noutro\n"
    assert main(["docs", "--check"]) == 0 and capsys.readouterr().out == "generated docs are current\n"


def test_the_shipped_generated_docs_are_current():
    res = run_cli("docs", "--check")
    assert res.returncode == 0 and res.stdout == "generated docs are current\n", res.stdout + res.stderr
