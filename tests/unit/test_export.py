"""TFLite export round trip on a small random model: float32 and float16 match Keras, int8 runs
and follows it; a .tflite path gives a predictor with the usual surface (the same pipeline on the LiteRT
backend, the same labels as Keras on real films); the CLI writes a file."""
import json

import numpy as np
import pytest

from pneumo_core.artifacts import sidecar
from pneumo_core.inference import gradcam as explain
from pneumo_core.inference.backends import KerasBackend
from pneumo_core.inference.litert import LiteRTBackend
from pneumo_core.inference.model_files import write_manifest
from pneumo_core.inference.predictor import Predictor
from pneumo_core.training.export import convert, export_tflite
from tests.helpers.tiny_models import lively_model, random_inputs


@pytest.fixture(scope="module")
def frozen_tiny():
    return lively_model("frozen", seed=2)


@pytest.fixture(scope="module")
def shipped_frozen():
    return Predictor("frozen", kind="keras")


@pytest.fixture(scope="module")
def exported(frozen_tiny, tmp_path_factory):
    """float32 (through the CLI, from a saved .keras file) and float16 (through the API) exports."""
    from pneumo_core.cli import main

    out = tmp_path_factory.mktemp("tflite")
    frozen_tiny.save(out / "tiny.keras")
    write_manifest(out)  # a model one made loads only once recorded (models fail closed)
    assert main(["export", "--model", str(out / "tiny.keras"), "--out", str(out / "tiny.none.tflite")]) == 0
    export_tflite(frozen_tiny, out=out / "tiny.float16.tflite", quantize="float16")
    return {"none": out / "tiny.none.tflite", "float16": out / "tiny.float16.tflite"}


@pytest.fixture(scope="module")
def reference(frozen_tiny):
    x = random_inputs(4, seed=5)
    p = frozen_tiny(x, training=False).numpy()[:, 0]
    assert p.std() > 1e-3, "test model is degenerate"
    return x, p, explain.gradcam(frozen_tiny, x)


@pytest.mark.parametrize("quantize,p_tol,cam_tol", [("none", 2e-4, 1e-3), ("float16", 0.01, 0.02)])
@pytest.mark.slow
def test_tflite_matches_keras(exported, reference, quantize, p_tol, cam_tol):
    x, p_ref, cam_ref = reference
    pred = Predictor(exported[quantize], warm_up=False)
    assert isinstance(pred.backend, LiteRTBackend)
    p, cam, pooled = pred.explain_arrays(x)
    assert p.shape == (4,) and cam.shape == (4, 7, 7) and pooled.shape == (4, 1280)
    np.testing.assert_allclose(p, p_ref, atol=p_tol, rtol=0)
    assert np.abs(cam - cam_ref).max() <= cam_tol * cam_ref.max()
    # batch size changes (1 after 4) re-plan the interpreter and give the same numbers
    p1, _ = pred.predict_arrays(x[2:3])
    assert p1[0] == pytest.approx(p[2], abs=1e-6)


def test_sidecar_records_the_export(exported):
    meta = json.loads(sidecar(exported["none"]).read_text())
    assert meta["quantize"] == "none" and meta["source_name"] == "tiny" and len(meta["source_sha256"]) == 64
    meta = json.loads(sidecar(exported["float16"]).read_text())
    assert meta["quantize"] == "float16" and meta["format"] == "tflite"
    assert meta["bytes"] == exported["float16"].stat().st_size
    assert exported["float16"].stat().st_size < 0.6 * exported["none"].stat().st_size


@pytest.mark.slow
def test_int8_follows_the_shipped_model_on_real_films(shipped_frozen, data_root, tmp_path):
    """int8 on the shipped frozen model (a random model's activations do not quantise like a
    trained one's), calibrated on training films, scored on 12 test films: close probabilities,
    the same labels where the float model is clear of its threshold, a similar Grad-CAM. A
    constant output (e.g. 0.5) or a broken calibration fails every bound."""
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.litert import make_interpreter
    from pneumo_core.inference.preprocess import model_input
    from pneumo_core.training.export import calibration_paths

    films = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:6] + sorted(
        (data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:6]
    x = np.stack([model_input(load_path(f)) for f in films])
    p_ref = shipped_frozen.model(x, training=False).numpy()[:, 0]
    cam_ref = explain.gradcam(shipped_frozen.model, x)
    assert p_ref.std() > 0.2, "the reference must spread for the bounds to mean anything"
    calib = calibration_paths(data_root, n=12, seed=0)
    assert len(calib) >= 10 and all("/train/" in p for p in calib)
    (tmp_path / "int8.tflite").write_bytes(convert(shipped_frozen.model, "int8", calib))
    interp = make_interpreter(tmp_path / "int8.tflite")
    assert any(d["dtype"] == np.int8 for d in interp.get_tensor_details())
    inp = interp.get_input_details()[0]
    assert inp["dtype"] == np.float32  # float interface: the same preprocessing applies
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    outs = {len(d["shape_signature"]): interp.get_tensor(d["index"]) for d in interp.get_output_details()}
    p = outs[1].ravel()
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    # measured: mean |dp| 0.045, max 0.24 (one film near the middle), Pearson r 0.98
    assert np.abs(p - p_ref).mean() < 0.1
    assert np.corrcoef(p, p_ref)[0, 1] > 0.9
    threshold = shipped_frozen.threshold
    clear = np.abs(p_ref - threshold) > 0.15
    assert clear.sum() >= 8 and ((p[clear] >= threshold) == (p_ref[clear] >= threshold)).all()
    assert np.corrcoef(outs[3].ravel(), cam_ref.ravel())[0, 1] > 0.7


def test_tflite_path_gives_a_predictor_with_the_same_surface(exported, test_pneumonia):
    pred = Predictor(str(exported["none"]))
    assert isinstance(pred.backend, LiteRTBackend) and pred.name == "tiny.none" and pred.model is None
    one = pred.predict(test_pneumonia, explain=True)
    assert one.error is None and one.label in ("NORMAL", "PNEUMONIA")
    assert one.heatmap is not None and one.heatmap.shape == one.image.shape[:2]
    many = pred.predict_files([test_pneumonia, test_pneumonia], batch_size=2)
    assert [r.p_pneumonia for r in many] == pytest.approx([one.p_pneumonia] * 2, abs=1e-5)


@pytest.fixture(scope="module")
def frozen_export(shipped_frozen, tmp_path_factory):
    """The shipped frozen model exported as float32; its threshold and OOD detector travel with it."""
    out = tmp_path_factory.mktemp("shipped") / "frozen.tflite"
    export_tflite(shipped_frozen.path, out=out, quantize="none")
    return out


def test_keras_and_litert_backends_behind_one_predictor_agree_on_real_films(shipped_frozen, frozen_export, data_root):
    """One pipeline, two backends: the shipped frozen model as .keras and as its float32 .tflite give the
    same labels, OOD verdicts, notes and display copies on real test films, in the single and batch paths."""
    litert = Predictor(frozen_export)
    assert type(litert.backend) is LiteRTBackend and type(shipped_frozen.backend) is KerasBackend
    assert litert.threshold == pytest.approx(shipped_frozen.threshold) and litert.ood is not None
    films = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:6] + sorted(
        (data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:6]
    labels = []
    for film in films:
        data = film.read_bytes()
        a = shipped_frozen.predict(data, name=film.name, explain=True, display_size=160)
        b = litert.predict(data, name=film.name, explain=True, display_size=160)
        assert a.error is None and b.error is None, (a.error, b.error)
        assert (b.label, b.is_chest_xray, b.notes, b.file) == (a.label, a.is_chest_xray, a.notes, a.file)
        assert b.p_pneumonia == pytest.approx(a.p_pneumonia, abs=1e-3)
        assert b.ood_distance == pytest.approx(a.ood_distance, abs=0.05)
        assert max(b.film.pixels.shape[:2]) == 160 and np.array_equal(b.film.pixels, a.film.pixels)
        assert b.heatmap.shape == a.heatmap.shape == b.film.pixels.shape[:2]
        assert np.abs(b.heatmap.astype(np.float32) - a.heatmap.astype(np.float32)).max() < 0.02
        labels.append(a.label)
    assert set(labels) == {"NORMAL", "PNEUMONIA"}, "both classes must be among the films compared"
    batch = [r.label for r in litert.predict_files(films, batch_size=5)]
    assert batch == labels == [r.label for r in shipped_frozen.predict_files(films, batch_size=5)]


def test_predictor_without_cam_output_says_so(frozen_tiny, tmp_path, test_normal):
    """A foreign .tflite with only a probability output: label, no heatmap, a note."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    def prob(x):
        return frozen_tiny(x, training=False)[:, 0]

    frozen_fn = convert_variables_to_constants_v2(prob.get_concrete_function())
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen_fn])
    path = tmp_path / "plain.tflite"
    path.write_bytes(conv.convert())
    write_manifest(tmp_path)
    pred = Predictor(path)
    r = pred.predict(test_normal, explain=True)
    assert r.error is None and r.label is not None and r.heatmap is None
    assert any("Grad-CAM is not available" in n for n in r.notes)
    with pytest.raises(NotImplementedError):
        pred.explain_arrays(random_inputs(1))


def test_cli_export_refuses_a_missing_model(tmp_path, capsys):
    from pneumo_core.cli import main

    assert main(["export", "--model", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "x.tflite")]) == 2
    assert "not found" in capsys.readouterr().err


def test_falls_back_to_builtin_kernels_when_xnnpack_refuses_the_graph(exported, reference):
    """XNNPACK refuses some quantised graphs at allocation; the same file then runs on TFLite's
    built-in kernels with the same results."""
    x, p_ref, _ = reference
    pred = Predictor(exported["none"], warm_up=False, interpreters=1)
    slot = pred.backend._acquire()  # the one interpreter of the pool
    real = slot.interp

    class Refusing:
        def __getattr__(self, name):
            return getattr(real, name)

        def allocate_tensors(self):
            raise RuntimeError("failed to create XNNPACK runtime")

    slot.interp = Refusing()
    pred.backend._idle.put(slot)
    p, _ = pred.predict_arrays(x)
    assert pred.backend.delegate == "builtin" and not slot.xnnpack
    np.testing.assert_allclose(p, p_ref, atol=2e-4, rtol=0)


@pytest.mark.parametrize("shared", [False, True], ids=["separate-backbones", "shared-trunk"])
@pytest.mark.slow
def test_ensemble_exports_and_matches_keras(tmp_path, shared):
    """An output ensemble converts with builtin ops only (its head is one Dense over all members'
    pooled maps) and the export gives the Keras probabilities and Grad-CAM maps, both for runs
    with nothing in common and for runs that differ only in their top layers (the shipped kind,
    one shared trunk feeding a top per run)."""
    from pneumo_core.config import FINE_TUNE_LAYERS
    from pneumo_core.inference.model_files import BASE_NAME
    from pneumo_core.training.builders import build_ensemble

    if shared:
        runs = [lively_model("finetuned", seed=3) for _ in range(2)]
        rng = np.random.default_rng(0)
        for layer in runs[1].get_layer(BASE_NAME).layers[-FINE_TUNE_LAYERS + 1:]:
            layer.set_weights([w * rng.uniform(0.8, 1.2, w.shape).astype(w.dtype) for w in layer.get_weights()])
    else:
        runs = [lively_model("finetuned", seed=s) for s in (3, 4)]
    ens = build_ensemble(runs)
    assert ("shared_trunk" in [layer.name for layer in ens.get_layer(BASE_NAME).layers]) == shared
    x = random_inputs(3, seed=7)
    p_ref = ens(x, training=False).numpy()[:, 0]
    assert p_ref.std() > 1e-3, "test ensemble is degenerate"
    cam_ref = explain.gradcam(ens, x)
    export_tflite(ens, out=tmp_path / "ens.tflite", quantize="none")
    p, cam, pooled = Predictor(tmp_path / "ens.tflite", warm_up=False).explain_arrays(x)
    assert pooled.shape == (3, 2560)
    np.testing.assert_allclose(p, p_ref, atol=2e-4, rtol=0)
    assert np.abs(cam - cam_ref).max() <= 1e-3 * cam_ref.max()


# ---------------------------------------------------------------- the detector: named in reports/ or copied
def _source_with_reports(model, folder):
    """``folder/tiny.keras`` with reports (a validation threshold and an OOD detector fitted on its features),
    recorded in the folder's manifest; the detector."""
    from pneumo_core.artifacts import reports_dir
    from pneumo_core.inference.ood import MahalanobisOOD

    model.save(folder / "tiny.keras")
    keras_pred = Predictor(keras_model=model, warm_up=False)
    detector = MahalanobisOOD.fit(keras_pred.predict_arrays(random_inputs(16, seed=11))[1],
                                  keras_pred.predict_arrays(random_inputs(8, seed=12))[1])
    report = reports_dir(folder / "tiny.keras")
    report.mkdir(parents=True)
    (report / "training.json").write_text(json.dumps({"threshold": 0.37}))
    detector.save(report / "ood.npz")
    write_manifest(folder)
    return detector


@pytest.fixture(scope="module")
def moved_export(frozen_tiny, tmp_path_factory):
    """A saved model with reports, exported to another folder (which gets a copy of the detector), then the
    .tflite, its sidecar and that copy moved to a third folder and the source deleted."""
    import shutil

    src = tmp_path_factory.mktemp("source")
    detector = _source_with_reports(frozen_tiny, src)
    meta = export_tflite(src / "tiny.keras", out=src / "exported" / "tiny.tflite")
    dest = tmp_path_factory.mktemp("moved")
    for name in ("tiny.tflite", "tiny.tflite.json", "tiny.ood.npz"):
        shutil.move(src / "exported" / name, dest / name)
    shutil.rmtree(src)
    write_manifest(dest)  # the moved set, recorded where it now lives
    return dest / "tiny.tflite", meta, detector, Predictor(keras_model=frozen_tiny, ood=detector, warm_up=False)


@pytest.fixture(scope="module")
def beside_export(frozen_tiny, tmp_path_factory):
    """A saved model with reports exported into its own folder (the shipped case: models/finetuned.keras ->
    models/finetuned.tflite), over a stale detector copy that an earlier export left, recorded in the manifest."""
    folder = tmp_path_factory.mktemp("beside")
    detector = _source_with_reports(frozen_tiny, folder)
    (folder / "tiny.ood.npz").write_bytes(b"an earlier export's copy")
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    manifest["ood_detectors"]["tiny.ood.npz"] = {"sha256": "0" * 64}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    return folder / "tiny.tflite", export_tflite(folder / "tiny.keras"), detector


def test_an_export_beside_its_source_names_the_reports_detector_and_copies_nothing(beside_export, test_normal):
    from pneumo_core.artifacts import sha256_file

    path, meta, detector = beside_export
    folder = path.parent
    assert meta["ood_detector"]["file"] == "reports/tiny/ood.npz"
    assert meta["ood_detector"]["sha256"] == sha256_file(folder / "reports" / "tiny" / "ood.npz")
    assert json.loads(sidecar(path).read_text())["ood_detector"] == meta["ood_detector"]
    assert not (folder / "tiny.ood.npz").exists()  # no copy, and the stale one is gone
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert set(manifest["ood_detectors"]) == {"reports/tiny/ood.npz"}  # one entry: the one it already had
    assert set(manifest["models"]) == {"tiny.keras", "tiny.tflite"}
    pred = Predictor(path, warm_up=False)
    assert pred.threshold == 0.37 and pred.ood.threshold == pytest.approx(detector.threshold)
    np.testing.assert_array_equal(pred.ood.precision, detector.precision)
    assert pred.predict(test_normal).ood_distance is not None


@pytest.mark.parametrize("case,words", [
    ("flipped", "reports/tiny/ood.npz does not match the SHA-256 in MANIFEST.json"),
    ("recalibrated", "reports/tiny/ood.npz does not match the SHA-256 in tiny.tflite.json"),
    ("unreadable", "reports/tiny/ood.npz (the OOD detector of tiny.tflite) cannot be read"),
    ("missing", "reports/tiny/ood.npz (the OOD detector of tiny.tflite) is missing"),
])
def test_a_changed_reports_detector_is_refused_in_one_line(beside_export, tmp_path, case, words):
    """The detector an export names under reports/ is checked like a copy: against the manifest and against the
    sidecar (a detector recalibrated since the export is not the one the export was made with)."""
    import shutil

    from pneumo_core.artifacts import sha256_file
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.model_files import record_ood_detector
    from pneumo_core.inference.ood import MahalanobisOOD

    _, _, detector = beside_export
    folder = shutil.copytree(beside_export[0].parent, tmp_path / "models")
    found, export = folder / "reports" / "tiny" / "ood.npz", folder / "tiny.tflite"
    assert Predictor(export, warm_up=False).ood is not None  # the copy loads before damage
    if case == "flipped":
        blob = bytearray(found.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        found.write_bytes(bytes(blob))
    elif case == "recalibrated":  # what calibrate-ood does: a new detector, recorded in the manifest
        MahalanobisOOD(detector.mean, detector.precision, detector.threshold * 10, detector.target_frr).save(found)
        record_ood_detector(folder, found)
    elif case == "unreadable":  # recorded in the manifest and the sidecar, but not a detector
        found.write_bytes(b"PK\x03\x04 truncated")
        record_ood_detector(folder, found)
        meta = json.loads(sidecar(export).read_text())
        meta["ood_detector"]["sha256"] = sha256_file(found)
        sidecar(export).write_text(json.dumps(meta))
    else:
        found.unlink()
    with pytest.raises(ModelLoadError) as err:
        Predictor(export, warm_up=False)
    message = str(err.value)
    assert "\n" not in message and words in message and "export" in message, message


@pytest.mark.slow
def test_export_records_its_detector_and_threshold(moved_export):
    path, meta, detector, _ = moved_export
    assert meta["threshold"] == 0.37
    entry = meta["ood_detector"]
    assert entry["file"] == "tiny.ood.npz" and entry["threshold"] == pytest.approx(detector.threshold)
    from pneumo_core.artifacts import sha256_file

    assert entry["sha256"] == sha256_file(path.with_name("tiny.ood.npz"))
    assert json.loads(sidecar(path).read_text())["ood_detector"] == entry


def test_moved_export_keeps_threshold_and_ood_guard(moved_export, test_normal):
    path, _, detector, keras_pred = moved_export
    pred = Predictor(path, warm_up=False)
    assert not (path.parent / "reports").exists()  # nothing but the three files to read from
    assert pred.threshold == 0.37 and pred.threshold_source == "validation"
    assert pred.ood is not None and pred.ood.threshold == pytest.approx(detector.threshold)
    np.testing.assert_array_equal(pred.ood.precision, detector.precision)
    moved, source = pred.predict(test_normal), keras_pred.predict(test_normal)
    assert moved.ood_distance is not None and moved.is_chest_xray == source.is_chest_xray
    assert moved.ood_distance == pytest.approx(source.ood_distance, rel=0.01)


def test_a_changed_or_missing_detector_is_refused(moved_export, tmp_path):
    import shutil

    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.ood import MahalanobisOOD

    path, _, detector, _ = moved_export
    for name in ("tiny.tflite", "tiny.tflite.json", "tiny.ood.npz"):
        shutil.copyfile(path.with_name(name), tmp_path / name)
    copy = tmp_path / "tiny.tflite"
    # a valid detector, but not the exported one: a looser threshold would let anything through
    MahalanobisOOD(detector.mean, detector.precision, detector.threshold * 10, detector.target_frr).save(
        tmp_path / "tiny.ood.npz")
    write_manifest(tmp_path)  # even recorded in the folder's manifest, the sidecar still refuses it
    with pytest.raises(ModelLoadError, match="tiny.ood.npz does not match the SHA-256"):
        Predictor(copy, warm_up=False)
    (tmp_path / "tiny.ood.npz").write_bytes(b"PK\x03\x04 truncated")
    write_manifest(tmp_path)
    with pytest.raises(ModelLoadError, match="OOD detector was changed or damaged"):
        Predictor(copy, warm_up=False)
    (tmp_path / "tiny.ood.npz").unlink()
    with pytest.raises(ModelLoadError, match="tiny.ood.npz .* is missing"):
        Predictor(copy, warm_up=False)


def test_a_changed_tflite_file_is_refused(moved_export, tmp_path):
    import shutil

    from pneumo_core.errors import ModelLoadError

    path, _, _, _ = moved_export
    for name in ("tiny.tflite", "tiny.tflite.json", "tiny.ood.npz"):
        shutil.copyfile(path.with_name(name), tmp_path / name)
    blob = bytearray((tmp_path / "tiny.tflite").read_bytes())
    blob[-10] ^= 0xFF
    (tmp_path / "tiny.tflite").write_bytes(bytes(blob))
    write_manifest(tmp_path)  # even recorded in the folder's manifest, the sidecar still refuses it
    with pytest.raises(ModelLoadError, match="does not match the SHA-256 in tiny.tflite.json"):
        Predictor(tmp_path / "tiny.tflite", warm_up=False)


def test_factory_picks_the_backend_by_suffix(exported):
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.backends import ModelBackend, open_backend

    keras_file = exported["none"].with_name("tiny.keras")
    pred = Predictor(keras_file, warm_up=False)
    assert type(pred) is Predictor and type(pred.backend) is KerasBackend and pred.name == "tiny"
    tflite = Predictor(exported["none"], warm_up=False)
    assert type(tflite) is Predictor and type(tflite.backend) is LiteRTBackend  # one pipeline, no subclass
    assert all(isinstance(p.backend, ModelBackend) for p in (pred, tflite))
    with pytest.raises(ModelLoadError, match="is a TFLite file"):
        KerasBackend(exported["none"])  # no silent switch of format
    with pytest.raises(ModelLoadError, match="is a TFLite file"):
        Predictor(exported["none"], kind="keras")
    assert type(open_backend(exported["none"], warm_up=False)) is LiteRTBackend
    with pytest.raises(ValueError, match="unknown backend kind"):
        open_backend(keras_file, kind="onnx")


def test_interpreter_failure_with_an_empty_message_is_one_clear_line(exported, monkeypatch):
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference import litert

    def refuse(*args, **kwargs):
        raise RuntimeError("")

    monkeypatch.setattr(litert, "make_interpreter", refuse)
    with pytest.raises(ModelLoadError, match=r"could not load TFLite model tiny.none.tflite: RuntimeError\. Export it "
                       r"again \(python -m pneumo_core export"):
        Predictor(exported["none"], warm_up=False)
