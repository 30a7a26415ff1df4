"""Export a classifier to TensorFlow Lite (LiteRT): float32, float16 weights, or int8.

The exported graph is the compiled explain function of :mod:`explain` with its variables
frozen to constants: input ``image`` (B, 224, 224, 3) float32 in [-1, 1] (the output of
``preprocess.model_input``), outputs ``p_pneumonia`` (B,), the raw 7x7 Grad-CAM map (B, 7, 7) and the
pooled ``out_relu`` features (B, 1280 per member) that the out-of-distribution check needs. The backward
pass from the logit to ``out_relu`` is a handful of linear ops (the head is pooling, batch
norm and one dense layer), so it converts to TFLite builtins and Grad-CAM survives export.

* ``none``: float32, numerically the Keras model (about 1e-6).
* ``float16``: float16 weights (half the file), computed in float32 at run time.
* ``int8``: weights and activations int8, calibrated on ``n_calib`` training films
  (``representative_dataset``); input and outputs stay float32, so the same preprocessing applies.

An export is a set of files that can be moved together:

* ``<name>.tflite``: the graph;
* ``<name>.tflite.json`` (the sidecar): the source model and its SHA-256, the file's own SHA-256,
  the quantisation, the calibration images, the source's validation-chosen decision threshold, and
  ``ood_detector``: which file holds the source's out-of-distribution detector (``reports/<source stem>/ood.npz``),
  relative to the export's folder, and its SHA-256, when the source has one;
* ``<name>.ood.npz``: a copy of that detector, written only when the export goes to another folder than its
  source's. An export beside its source (``models/finetuned.keras`` -> ``models/finetuned.tflite``) names
  ``reports/<source stem>/ood.npz`` itself: the folder holds the detector once.

``Predictor(path)`` on the ``.tflite`` (its LiteRT backend, :mod:`pneumo_core.inference.litert`) reads the
threshold from the sidecar and the detector it names (checking the detector's digest), so a set moved with its
copy keeps both; to take an export made beside its source elsewhere, export it again with ``--out`` there.
The float32 exports of the shipped models, ``models/{finetuned,frozen}.tflite`` (what the runtime runs), are
written by ``make litert-models``; every export is recorded in the manifest of its folder (``models/MANIFEST.json``
for these; :func:`pneumo_core.inference.model_files.record_export`): the runtime refuses an unlisted file.

Keras 3 models are not frozen by ``TFLiteConverter.from_concrete_functions(..., model)`` in
TF 2.21: the variables stay resource variables (VAR_HANDLE ops), the file is 190 KB and every
output is NaN. Freezing with ``convert_variables_to_constants_v2`` first avoids that.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path

import numpy as np

from pneumo_core.artifacts import read_json, reports_dir, sha256_file, sidecar
from pneumo_core.config import MODELS_DIR, data_dir
from pneumo_core.datasets import listing
from pneumo_core.errors import ModelLoadError
from pneumo_core.imaging.decode import load_path
from pneumo_core.inference.gradcam import make_explain_fn
from pneumo_core.inference.model_files import (
    copied_detector_path,
    export_detector_path,
    load_model,
    record_export,
    resolve_model_path,
    split_model,
    verify_against_manifest,
)
from pneumo_core.inference.ood import MahalanobisOOD
from pneumo_core.inference.preprocess import model_input
from pneumo_core.recorded_paths import record_path

QUANTIZE = ("none", "float16", "int8")
DEFAULT_CALIBRATION_IMAGES = 300


def _frozen_function(model):
    """The explain function of ``model`` as a concrete function with constants for weights."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    backbone, head = split_model(model)
    return convert_variables_to_constants_v2(make_explain_fn(backbone, head).get_concrete_function())


def calibration_paths(data=None, n: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 42) -> list[str]:
    """``n`` training films (``DIR/train`` or the train folder itself), a seeded sample stratified
    by class, for int8 calibration. The test split is never used."""
    df = listing.list_images(listing.resolve_split_dir(data if data is not None else data_dir(), "train"))
    rng = np.random.default_rng(seed)
    picked = []
    for _, g in df.groupby("label"):
        k = min(len(g), max(1, round(n * len(g) / len(df))))
        picked += [str(p) for p in rng.choice(g.path.to_numpy(), size=k, replace=False)]
    return sorted(picked)


def _representative_dataset(paths):
    def gen():
        for p in paths:
            yield [model_input(load_path(p))[None]]

    return gen


def convert(model, quantize: str = "none", calibration: list[str] | None = None) -> bytes:
    """A Keras classifier -> TFLite flatbuffer bytes."""
    import tensorflow as tf

    if quantize not in QUANTIZE:
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {QUANTIZE}")
    # An empty trackable: the weights are constants already; without one TF takes a deprecated path.
    conv = tf.lite.TFLiteConverter.from_concrete_functions([_frozen_function(model)], tf.Module())
    if quantize == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if not calibration:
            raise ValueError("int8 quantization needs calibration images")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative_dataset(calibration)
    return conv.convert()


def default_out(source: Path | None, name: str, quantize: str) -> Path:
    """Where an export goes by default: ``<source's folder or models/>/<name>[.<quantize>].tflite``."""
    folder = source.parent if source is not None else MODELS_DIR
    return folder / (f"{name}.tflite" if quantize == "none" else f"{name}.{quantize}.tflite")


def export_tflite(model="finetuned", out=None, quantize: str = "none", data=None,
                  n_calib: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 42, verify: bool = True) -> dict:
    """Export ``model`` (``finetuned``/``frozen``/a ``.keras`` path, or a Keras model) to ``out``
    (default ``models/<name>[.<quantize>].tflite``); returns the metadata written beside it."""
    import tensorflow as tf

    if quantize not in QUANTIZE:
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {QUANTIZE}")
    if isinstance(model, (str, Path)) or model is None:
        source = resolve_model_path(model)
        keras_model = load_model(source, verify=verify)
        name, source_sha = source.stem, sha256_file(source)
    else:
        source, keras_model, name, source_sha = None, model, model.name, None
    calibration = calibration_paths(data, n_calib, seed) if quantize == "int8" else None
    blob = convert(keras_model, quantize, calibration)
    out = Path(out) if out is not None else default_out(source, name, quantize)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)

    threshold = read_json(reports_dir(source) / "training.json").get("threshold") if source is not None else None
    meta = {
        "format": "tflite",
        "file": out.name,
        "bytes": len(blob),
        "sha256": sha256_file(out),
        "quantize": quantize,
        # relative to the .tflite file's folder, so the pair can be moved together
        "source_model": os.path.relpath(source.resolve(), out.parent.resolve()) if source is not None else None,
        "source_name": name,
        "source_sha256": source_sha,
        "threshold": threshold,
        "ood_detector": _detector_entry(source, out, verify),
        "inputs": {"image": "float32 (B, 224, 224, 3) in [-1, 1]"},
        "outputs": {"p_pneumonia": "(B,)", "cam": "(B, 7, 7) raw Grad-CAM", "pooled": "(B, 1280 per member)"},
        "calibration": ({"images": len(calibration), "folder": record_path(Path(calibration[0]).parent.parent),
                         "seed": seed, "sample": "stratified by class, seeded"} if calibration else None),
        "tensorflow": tf.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    sidecar(out).write_text(json.dumps(meta, indent=2) + "\n")
    # every export is checked against its folder's manifest before it loads (fails closed): record it
    detector = meta["ood_detector"]
    record_export(out, export_detector_path(out, detector["file"]) if detector else None)
    return meta


def _detector_entry(source: Path | None, out: Path, verify: bool) -> dict | None:
    """The sidecar's record of the source model's OOD detector, or None when the source has none. The export's
    folder holds the detector once: an export beside its source names ``reports/<source stem>/ood.npz``, one to
    another folder gets a copy, ``<name>.ood.npz``. A copy from an earlier export is removed when not written
    again, so it cannot be read."""
    target = copied_detector_path(out)
    found = reports_dir(source) / "ood.npz" if source is not None else None
    if found is None or not found.is_file():
        target.unlink(missing_ok=True)
        return None
    models_dir = found.parent.parent.parent  # the models folder that holds reports/<stem>/
    if verify:
        verify_against_manifest(found, models_dir=models_dir,
                                remedy="Restore it or recalibrate (python -m pneumo_core calibrate-ood).")
    try:
        detector = MahalanobisOOD.load(found)
    except Exception as exc:  # np.load raises many types for a damaged file
        raise ModelLoadError(f"the OOD detector {found} cannot be read ({type(exc).__name__}); "
                             "recalibrate it (python -m pneumo_core calibrate-ood)") from None
    if models_dir.resolve() == out.parent.resolve():  # the export's folder holds it already
        target.unlink(missing_ok=True)
        target, name = found, found.relative_to(models_dir).as_posix()
    else:
        shutil.copyfile(found, target)
        name = target.name
    return {"file": name, "sha256": sha256_file(target), "threshold": detector.threshold,
            "target_frr": detector.target_frr}
