"""The lean runtime: the shipped LiteRT models (models/{finetuned,frozen}.tflite) agree with the .keras files on
every bundled film, are the default backend (PNEUMO_BACKEND and --backend pick Keras), are refused in one line
with the fix when missing, changed, unlisted or unloadable (never a silent fall-back), run as a pool of
interpreters, and the scoring path never imports TensorFlow; commands that need TensorFlow say so in one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from pneumo_core.errors import MissingDependency, ModelLoadError
from pneumo_core.inference.backends import KerasBackend, choose_kind
from pneumo_core.inference.litert import LiteRTBackend
from pneumo_core.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("ex*.jpeg"))
EXPORT_FILES = ("{v}.tflite", "{v}.tflite.json")  # the detector it names: reports/{v}/ood.npz


def run_cli(*args, env=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pneumo_core", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(res, *words) -> str:
    """Exit status 2, no traceback, and one ``error:`` line holding ``words``; the line."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and res.stdout == "", res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def litert_models(tmp_path: Path, variant: str = "frozen") -> Path:
    """A models folder holding the shipped export of ``variant`` (.tflite, sidecar), its reports (with the detector
    the sidecar names) and the shipped manifest: a copy to damage, nothing under models/ touched."""
    models = tmp_path / "models"
    (models / "reports").mkdir(parents=True)
    for name in (*EXPORT_FILES, "MANIFEST.json"):
        shutil.copy(MODELS / name.format(v=variant), models)
    shutil.copytree(MODELS / "reports" / variant, models / "reports" / variant)
    return models


# ---------------------------------------------------------------- the shipped exports agree with the .keras files
@pytest.mark.parametrize("variant", ["finetuned", "frozen"])
def test_shipped_tflite_agrees_with_keras_on_every_bundled_film(variant):
    """Float32 LiteRT against Keras on the 40 teaching films: same label and chest-X-ray flag, |dp| <= 1e-3,
    heatmaps correlated >= 0.99 (measured: max |dp| 3.7e-6 fine-tuned, 4.4e-6 frozen; min r 0.99999999)."""
    keras, litert = Predictor(variant, kind="keras"), Predictor(variant, kind="litert")
    assert type(keras.backend) is KerasBackend and type(litert.backend) is LiteRTBackend
    assert litert.path == MODELS / f"{variant}.tflite" and litert.threshold == keras.threshold
    assert litert.ood.threshold == keras.ood.threshold
    dps, corrs = [], []
    for film in EXAMPLES:
        data = film.read_bytes()
        a = keras.predict(data, name=film.name, explain=True)
        b = litert.predict(data, name=film.name, explain=True)
        assert a.error is None and b.error is None, (film.name, a.error, b.error)
        assert (b.label, b.is_chest_xray) == (a.label, a.is_chest_xray), film.name
        dps.append(abs(b.p_pneumonia - a.p_pneumonia))
        corrs.append(np.corrcoef(a.heatmap.astype(np.float32).ravel(), b.heatmap.astype(np.float32).ravel())[0, 1])
    print(f"{variant}: {len(EXAMPLES)} films, max |dp| {max(dps):.2e}, mean |dp| {np.mean(dps):.2e}, "
          f"min heatmap r {min(corrs):.8f}")
    assert len(EXAMPLES) == 40 and max(dps) <= 1e-3 and min(corrs) >= 0.99


# ---------------------------------------------------------------- which backend runs a model
def test_litert_is_the_default_and_the_setting_or_kind_picks_keras(monkeypatch):
    from pneumo_core.inference import backends

    monkeypatch.delenv("PNEUMO_BACKEND", raising=False)
    assert choose_kind("finetuned") == choose_kind(None) == "litert"
    assert choose_kind("models/x.keras") == "keras" and choose_kind("x.int8.tflite") == "litert"
    assert choose_kind("finetuned", "keras") == "keras"
    monkeypatch.setenv("PNEUMO_BACKEND", "keras")
    assert choose_kind("frozen") == "keras" and choose_kind("x.tflite") == "litert"  # a path: its suffix
    monkeypatch.setenv("PNEUMO_BACKEND", "onnx")
    with pytest.raises(ValueError, match="PNEUMO_BACKEND must be litert or keras"):
        choose_kind("frozen")
    # without ai_edge_litert (only TensorFlow): Keras, unless LiteRT was asked for (then tf.lite runs the file)
    monkeypatch.setattr(backends, "litert_available", lambda: False)
    monkeypatch.delenv("PNEUMO_BACKEND")
    assert choose_kind("frozen") == "keras"
    monkeypatch.setenv("PNEUMO_BACKEND", "litert")
    assert choose_kind("frozen") == "litert"


def test_predictor_by_name_opens_the_tflite_and_a_keras_path_stays_keras(monkeypatch):
    monkeypatch.delenv("PNEUMO_BACKEND", raising=False)
    pred = Predictor("frozen", warm_up=False)
    assert type(pred.backend) is LiteRTBackend and pred.path == MODELS / "frozen.tflite" and pred.name == "frozen"
    assert pred.model is None and pred.has_gradcam
    assert type(Predictor(MODELS / "frozen.keras", verify=False, warm_up=False).backend) is KerasBackend
    monkeypatch.setenv("PNEUMO_BACKEND", "keras")
    assert type(Predictor("frozen", warm_up=False).backend) is KerasBackend
    with pytest.raises(ModelLoadError, match="frozen.keras is a Keras file; the LiteRT backend runs its export"):
        Predictor(MODELS / "frozen.keras", kind="litert")


def test_cli_backend_flag_gives_the_same_contract(test_normal, test_pneumonia):
    outs = {}
    for backend in ("litert", "keras"):
        res = run_cli("predict", "--json", "--model", "frozen", "--backend", backend, test_normal, test_pneumonia)
        assert res.returncode == 0, res.stderr
        outs[backend] = json.loads(res.stdout)
    for a, b in zip(outs["keras"], outs["litert"]):
        assert set(a) == set(b) and (a["label"], a["is_chest_xray"], a["model"]) == (b["label"], b["is_chest_xray"],
                                                                                      b["model"])
        assert a["p_pneumonia"] == pytest.approx(b["p_pneumonia"], abs=1e-3)
    res = run_cli("predict", "--backend", "onnx", test_normal)
    assert res.returncode == 2 and "invalid choice" in res.stderr


# ---------------------------------------------------------------- bad files: one line, the file, the fix
def _damage(models: Path, case: str) -> None:
    tflite, manifest_path = models / "frozen.tflite", models / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    if case == "missing":
        tflite.unlink()
    elif case == "changed":
        blob = bytearray(tflite.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        tflite.write_bytes(bytes(blob))
    elif case == "unlisted":
        del manifest["models"]["frozen.tflite"]
        manifest_path.write_text(json.dumps(manifest))
    elif case == "unloadable":  # recorded everywhere, but not a model: only the interpreter can tell
        from pneumo_core.artifacts import sha256_file, sidecar

        tflite.write_bytes(b"TFL3 this is not a flatbuffer" * 100)
        manifest["models"]["frozen.tflite"]["sha256"] = sha256_file(tflite)
        manifest_path.write_text(json.dumps(manifest))
        meta = json.loads(sidecar(tflite).read_text())
        sidecar(tflite).write_text(json.dumps({**meta, "sha256": sha256_file(tflite)}))
    elif case == "stale":  # the .keras file was retrained (manifest rewritten) but not exported again
        manifest["models"]["frozen.keras"]["sha256"] = "0" * 64
        manifest_path.write_text(json.dumps(manifest))
    elif case == "detector":
        detector = models / "reports" / "frozen" / "ood.npz"
        blob = detector.read_bytes()
        detector.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    elif case == "recalibrated":  # calibrate-ood since the export: a new detector, recorded in the manifest
        from pneumo_core.inference.model_files import record_ood_detector
        from pneumo_core.inference.ood import MahalanobisOOD

        detector = models / "reports" / "frozen" / "ood.npz"
        old = MahalanobisOOD.load(detector)
        MahalanobisOOD(old.mean, old.precision, old.threshold * 10, old.target_frr).save(detector)
        record_ood_detector(models, detector)
    elif case == "no detector":
        (models / "reports" / "frozen" / "ood.npz").unlink()


DAMAGE = {  # case -> words the message must hold
    "missing": ("model file not found: models/frozen.tflite", "python -m pneumo_core export --model frozen",
                "git checkout models/", "--backend keras"),
    "changed": ("models/frozen.tflite does not match the SHA-256 in MANIFEST.json",
                "python -m pneumo_core export --model frozen", "git checkout models/"),
    "unlisted": ("models/frozen.tflite is not listed in MANIFEST.json", "python -m pneumo_core export --model frozen"),
    "unloadable": ("could not load TFLite model frozen.tflite", "python -m pneumo_core export --model frozen"),
    "stale": ("models/frozen.tflite was exported from another frozen.keras than the one in MANIFEST.json",
              "python -m pneumo_core export --model frozen"),
    "detector": ("models/reports/frozen/ood.npz does not match the SHA-256 in MANIFEST.json", "git checkout models/"),
    "recalibrated": ("models/reports/frozen/ood.npz does not match the SHA-256 in frozen.tflite.json",
                     "python -m pneumo_core export --model frozen"),
    "no detector": ("models/reports/frozen/ood.npz (the OOD detector of frozen.tflite) is missing",
                    "python -m pneumo_core export --model frozen", "git checkout models/"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_bad_shipped_tflite_is_refused_in_one_line_with_the_fix(case, tmp_path, monkeypatch, test_normal):
    import pneumo_core.config as config

    models = litert_models(tmp_path)
    assert Predictor(models / "frozen.tflite", warm_up=False).ood is not None  # the copy loads before damage
    _damage(models, case)
    monkeypatch.setattr(config, "MODELS_DIR", models)
    monkeypatch.delenv("PNEUMO_BACKEND", raising=False)
    with pytest.raises(ModelLoadError) as err:
        Predictor("frozen")
    message = str(err.value)
    assert "\n" not in message and all(word in message for word in DAMAGE[case]), message
    # the CLI: exit 2, that line, no scores from another model
    one_error_line(run_cli("predict", "--json", "--model", "frozen", test_normal, env={"PNEUMO_MODELS_DIR": models}),
                   *DAMAGE[case][:2])


def test_no_interpreter_at_all_is_one_line(monkeypatch):
    """Neither ai_edge_litert nor TensorFlow: what to install, not an ImportError."""
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency, match=r"the LiteRT backend needs ai-edge-litert: pip install -r "
                                                r"requirements\.txt"):
        Predictor("frozen", kind="litert", warm_up=False)


# ---------------------------------------------------------------- without TensorFlow
TF_COMMANDS = [["train", "--variant", "frozen", "--data", "DATA"], ["export", "--model", "frozen"],
               ["calibrate-ood", "--data", "DATA"], ["ensemble", "a.keras", "--data", "DATA"],
               ["soup", "a.keras", "--data", "DATA"], ["wise-ft", "a.keras", "--out", "OUT"]]


@pytest.mark.parametrize("argv", TF_COMMANDS, ids=[a[0] for a in TF_COMMANDS])
def test_commands_that_need_tensorflow_say_so_in_one_line(argv, monkeypatch, capsys):
    from pneumo_core.cli import main
    from pneumo_core.inference import backends

    monkeypatch.setattr(backends, "tensorflow_available", lambda: False)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (f"error: python -m pneumo_core {argv[0]} needs TensorFlow: "
                                                   "pip install -r requirements-train.txt\n")


def test_the_keras_backend_without_tensorflow_is_one_line(monkeypatch, capsys, test_normal):
    from pneumo_core.cli import main
    from pneumo_core.inference import backends

    monkeypatch.setattr(backends, "tensorflow_available", lambda: False)
    assert main(["predict", "--backend", "keras", str(test_normal)]) == 2
    assert capsys.readouterr().err == ("error: python -m pneumo_core predict on the Keras backend needs TensorFlow: "
                                       "pip install -r requirements-train.txt\n")
    with pytest.raises(MissingDependency, match="the Keras backend .frozen.keras. needs TensorFlow"):
        Predictor("frozen", kind="keras")


RUNTIME_SCRIPT = r"""
import importlib, io, pkgutil, sys
import numpy as np
from PIL import Image
import pneumo_core
skip = ("pneumo_core.training",)
for mod in pkgutil.walk_packages(pneumo_core.__path__, "pneumo_core."):
    if not mod.name.startswith(skip) and mod.name != "pneumo_core.__main__":
        importlib.import_module(mod.name)
for name in ("cache", "runtime", "study", "viewer", "pacs_source", "quiz_results", "examples", "uploads"):
    importlib.import_module("ui." + name)
from pneumo_core import Predictor
from pneumo_core.cli import main
film = Image.open("assets/examples/ex02.jpeg").convert("L").resize((900, 1100), Image.BICUBIC)
buf = io.BytesIO(); film.save(buf, "PNG")
pred = Predictor("finetuned").predict(buf.getvalue(), name="big.png", explain=True, display_size=300)
assert pred.error is None and pred.heatmap.shape == pred.film.pixels.shape[:2], pred
assert main(["predict", "--json", "assets/examples/ex01.jpeg"]) == 0
print("LOADED", sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


def test_the_scoring_path_never_imports_tensorflow():
    """Every library module but training/, the dashboard's ui modules, a non-224 film with Grad-CAM, and the CLI's
    predict: TensorFlow and Keras are installed here, and still never imported."""
    res = subprocess.run([sys.executable, "-c", RUNTIME_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "PNEUMO_BACKEND": ""})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "LOADED []" in res.stdout, res.stdout[-2000:]


# ---------------------------------------------------------------- threads and interpreters
def test_layout_per_use_and_its_settings(monkeypatch):
    from pneumo_core.config import litert_layout

    monkeypatch.delenv("PNEUMO_LITERT_INTERPRETERS", raising=False)
    monkeypatch.delenv("PNEUMO_LITERT_THREADS", raising=False)
    assert litert_layout("batch", 2) == (1, 2) and litert_layout("batch", 16) == (1, 16)
    assert litert_layout("serve", 2) == (2, 2) and litert_layout("serve", 16) == (4, 8)  # at most 2x the cores
    assert litert_layout("serve", 1) == (1, 1) and litert_layout("serve", 3) == (3, 2)
    monkeypatch.setenv("PNEUMO_LITERT_INTERPRETERS", "3")
    monkeypatch.setenv("PNEUMO_LITERT_THREADS", "2")
    assert litert_layout("batch", 8) == litert_layout("serve", 8) == (3, 2)
    monkeypatch.setenv("PNEUMO_LITERT_THREADS", "0")
    with pytest.raises(ValueError, match="PNEUMO_LITERT_THREADS must be a whole number of at least 1"):
        litert_layout("serve", 2)


def test_a_pool_of_interpreters_serves_concurrent_calls_with_the_same_numbers():
    from tests.helpers.tiny_models import random_inputs

    pred = Predictor("frozen", interpreters=2, num_threads=1)
    assert (pred.backend.pool_size, pred.backend.num_threads, pred.backend._created) == (2, 1, 2)  # warmed: both
    x = random_inputs(4, seed=1)
    ref = pred.explain_arrays(x)
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(pred.explain_arrays(x))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 12 and pred.backend._created == 2
    for got in results:
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)
    assert Predictor("frozen", warm_up=False).backend.pool_size == 1  # the CLI's batch use: one interpreter


# ---------------------------------------------------------------- the manifest
def test_manifest_lists_the_shipped_exports_and_export_records_them(tmp_path):
    from pneumo_core.inference.model_files import record_export, write_manifest

    models = litert_models(tmp_path)
    shutil.copy(MODELS / "frozen.keras", models)
    shipped = json.loads((MODELS / "MANIFEST.json").read_text())
    written = write_manifest(models)
    assert set(written["models"]) == {"frozen.keras", "frozen.tflite"}
    assert set(written["ood_detectors"]) == {"reports/frozen/ood.npz", "reports/frozen/shift_reference.npz"}
    for section, entries in written.items():
        for name, entry in entries.items():
            assert entry["sha256"] == shipped[section][name]["sha256"], name  # the shipped hashes, unchanged
    del written["models"]["frozen.tflite"]
    (models / "MANIFEST.json").write_text(json.dumps(written))
    record_export(models / "frozen.tflite", models / "reports" / "frozen" / "ood.npz")
    recorded = json.loads((models / "MANIFEST.json").read_text())
    assert recorded["models"]["frozen.tflite"] == shipped["models"]["frozen.tflite"]
    assert recorded["ood_detectors"] == written["ood_detectors"]  # the reports/ entry, once, under its own path


def test_the_shipped_exports_name_their_reports_detector_and_no_copy_ships():
    """The models folder holds each detector once: the sidecars name reports/<variant>/ood.npz."""
    from pneumo_core.artifacts import sha256_file

    assert not list(MODELS.glob("*.ood.npz"))
    for variant in ("finetuned", "frozen"):
        entry = json.loads((MODELS / f"{variant}.tflite.json").read_text())["ood_detector"]
        assert entry["file"] == f"reports/{variant}/ood.npz"
        assert entry["sha256"] == sha256_file(MODELS / entry["file"])
        assert Predictor(variant, warm_up=False).ood.threshold == pytest.approx(entry["threshold"])


@pytest.mark.parametrize("file", ["../outside/ood.npz", "reports/../../outside/ood.npz", "ABSOLUTE",
                                  "reports\\frozen\\ood.npz", ""])
def test_a_sidecar_naming_a_detector_outside_its_folder_is_refused(file, tmp_path, test_normal):
    """A sidecar is data: even pointing at a valid detector with the digest it records, a name that leaves the
    export's folder is refused (with checks off too), in one line; the CLI exits 2."""
    from pneumo_core.artifacts import sidecar

    models = litert_models(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(models / "reports" / "frozen" / "ood.npz", outside / "ood.npz")
    file = str(outside / "ood.npz") if file == "ABSOLUTE" else file
    meta = json.loads(sidecar(models / "frozen.tflite").read_text())
    meta["ood_detector"]["file"] = file
    sidecar(models / "frozen.tflite").write_text(json.dumps(meta))
    for verify in (True, False):
        with pytest.raises(ModelLoadError) as err:
            Predictor(models / "frozen.tflite", verify=verify, warm_up=False)
        message = str(err.value)
        assert "\n" not in message and str(tmp_path) not in message, message
        assert "frozen.tflite.json names an OOD detector that is not a path inside the export's folder" in message
        assert "python -m pneumo_core export" in message.split("refused")[1], message
    one_error_line(run_cli("predict", "--json", "--model", "frozen", test_normal, env={"PNEUMO_MODELS_DIR": models}),
                   "frozen.tflite.json names an OOD detector", "python -m pneumo_core export --model frozen")


def test_a_report_evaluated_on_the_export_matches_its_keras_file():
    """``evaluate`` on the default backend records the .tflite's SHA-256: the Home page's "matches evaluated model"
    accepts it only for the export of that very .keras file."""
    from pneumo_core.artifacts import sha256_file
    from pneumo_core.evaluation import reports
    from pneumo_core.review import decisions

    rep = reports.load_report("frozen", MODELS)
    rep.metrics = {**rep.metrics, "model_sha256": sha256_file(MODELS / "frozen.tflite")}
    assert decisions.models_overview({"frozen": rep}, sha256_file).iloc[0]["matches evaluated model"] == "yes"
    rep.metrics["model_sha256"] = sha256_file(MODELS / "finetuned.tflite")  # another model's export
    row = decisions.models_overview({"frozen": rep}, sha256_file).iloc[0]
    assert row["matches evaluated model"] == "NO: reports are stale"
