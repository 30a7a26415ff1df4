"""Model files: finding, checking (SHA-256 manifest) and safely loading the shipped classifiers and the
OOD detectors in their reports, and taking a loaded classifier apart (backbone and head) for the
compiled inference path and Grad-CAM.
The builders that make these models are in :mod:`pneumo_core.training.builders`.

Checks fail closed: a model (``.keras``, ``.tflite``) or detector (``reports/<name>/ood.npz``, an export's
copy ``<name>.ood.npz``) loads only when the ``MANIFEST.json`` of its models folder lists it with the SHA-256 it
has. The shipped ``models/`` folder has a committed manifest; training (``train``, ``soup``, ``ensemble``,
``wise-ft``), ``export`` and ``calibrate-ood`` record what they write in the manifest of the folder they write to;
any other file is recorded deliberately with ``python -m pneumo_core manifest --dir FOLDER``. The manifest guards
against a changed, truncated or swapped file, not against someone who can write the folder (they could rewrite the
manifest too).
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from pneumo_core.artifacts import sha256_file, sidecar
from pneumo_core.config import DEFAULT_VARIANT, MODELS_DIR, PROJECT_DIR, SHIPPED_VARIANTS, model_path
from pneumo_core.errors import ModelLoadError, first_line
from pneumo_core.inference.ood import MahalanobisOOD

BASE_NAME = "mobilenetv2_base"
MANIFEST = "MANIFEST.json"


def ensemble_parts(model) -> list:
    """The per-member sub-models inside an ensemble's backbone (``member{k}_top`` or
    ``member{k}_backbone``), in member order; empty for a single model."""
    import re

    base = model.get_layer(BASE_NAME)
    return [layer for layer in base.layers if re.fullmatch(r"member\d+_(top|backbone)", layer.name)]


def member_feature_dim(model) -> int:
    """Channels of one member's ``out_relu`` maps (the whole backbone's for a single model)."""
    inner = ensemble_parts(model)
    return int((inner[0] if inner else model.get_layer(BASE_NAME)).output.shape[-1])


def split_model(model):
    """(backbone, head): the base returning ``out_relu`` maps, and a model from those maps to the
    logit. Used by Grad-CAM and the compiled inference path."""
    import keras

    base = model.get_layer(BASE_NAME)
    fmap = keras.Input(base.output.shape[1:], name="out_relu_maps")
    x = fmap
    started = False
    for layer in model.layers:
        if layer is base:
            started = True
            continue
        if not started or isinstance(layer, keras.layers.InputLayer):
            continue
        x = layer(x)
        if layer.name == "logit":
            break
    return base, keras.Model(fmap, x, name="head_to_logit")


# ---------------------------------------------------------------- shipped models
def resolve_model_path(model: str | Path | None, kind: str | None = None) -> Path:
    """``None`` / ``"finetuned"`` / ``"frozen"`` -> the shipped file (``.tflite`` for ``kind="litert"``, else
    ``.keras``); anything else is a path."""
    name = str(model) if model is not None else DEFAULT_VARIANT
    if name in SHIPPED_VARIANTS:
        return model_path(name, suffix=".tflite" if kind == "litert" else ".keras")
    return Path(name)


def shipped_litert_variant(path: str | Path) -> str | None:
    """The variant whose shipped LiteRT export ``path`` is (``<models dir>/<variant>.tflite`` in a folder with a
    manifest: listing it there is required), else None."""
    path = Path(path)
    variant = path.name[: -len(".tflite")] if path.name.endswith(".tflite") else None
    return variant if variant in SHIPPED_VARIANTS and (path.parent / MANIFEST).is_file() else None


def shown_path(path: str | Path) -> str:
    """``models/finetuned.tflite``: a file named with its folder, never a path of this machine."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def expected_hash(path: str | Path, models_dir: str | Path | None = None) -> str | None:
    """SHA-256 recorded for ``path`` (a model, or a detector under ``reports/``) in the manifest
    of ``models_dir`` (default: the file's own folder), if it is listed there."""
    path = Path(path)
    models_dir = Path(models_dir) if models_dir is not None else path.parent
    manifest = models_dir / MANIFEST
    if not manifest.is_file():
        return None
    try:
        entries = json.loads(manifest.read_text())
        key = Path(os.path.abspath(path)).relative_to(os.path.abspath(models_dir)).as_posix()
    except ValueError:  # a manifest that is not JSON, or a file outside the folder: nothing is listed
        return None
    if not isinstance(entries, dict):
        return None
    for section in ("models", "ood_detectors"):
        entry = (entries.get(section) or {}).get(key)
        if isinstance(entry, dict):
            return entry.get("sha256")
    return None


def record_hint(models_dir: str | Path) -> str:
    """How to record the files of ``models_dir`` that one made oneself (the folder named relative to the
    checkout, or by its name alone: never a path of this machine)."""
    folder = Path(os.path.abspath(models_dir))
    try:
        shown = folder.relative_to(PROJECT_DIR).as_posix() or "."
    except ValueError:
        shown = folder.name
    return f"A model you trained or exported yourself: record it with python -m pneumo_core manifest --dir {shown}."


def verify_against_manifest(path: str | Path, models_dir: str | Path | None = None, sha256: str | None = None,
                            remedy: str = "Restore it (git checkout models/) or retrain.",
                            name: str | None = None) -> None:
    """Refuse a file that the manifest of ``models_dir`` (default: the file's own folder) does not list, or whose
    SHA-256 differs from the one it records (``sha256``: the file's digest if the caller already has it): checks
    fail closed. ``name``: how the file is named in the message; ``remedy``: the fix for a shipped file."""
    models_dir = Path(models_dir) if models_dir is not None else Path(path).parent
    want = expected_hash(path, models_dir)
    name = name or Path(path).name
    if want is None:
        raise ModelLoadError(f"{name} is not listed in {MANIFEST}, so it cannot be checked and is refused. "
                             f"{remedy} {record_hint(models_dir)}")
    if (sha256 or sha256_file(path)) != want:
        raise ModelLoadError(f"{name} does not match the SHA-256 in {MANIFEST}: the file was changed "
                             f"or truncated. {remedy}")


def report_ood(report_dir: Path | None, verify: bool = True) -> MahalanobisOOD | None:
    """The OOD detector in a model's reports folder (``reports/<name>/ood.npz``), checked against the
    manifest of the models folder that holds it when ``verify``; None when there is none."""
    if report_dir is None or not (report_dir / "ood.npz").exists():
        return None
    path = report_dir / "ood.npz"
    if verify:
        verify_against_manifest(path, models_dir=report_dir.parent.parent,
                                remedy="Restore it or recalibrate (python -m pneumo_core calibrate-ood).")
    return MahalanobisOOD.load(path)


def copied_detector_path(export: str | Path) -> Path:
    """Where an export to another folder than its source's copies the source's OOD detector: ``<name>.ood.npz``
    beside ``<name>.tflite``."""
    export = Path(export)
    stem = export.name[: -len(".tflite")] if export.name.endswith(".tflite") else export.stem
    return export.with_name(f"{stem}.ood.npz")


def export_detector_path(export: str | Path, file,
                         remedy: str = "Export the model again (python -m pneumo_core export).") -> Path:
    """The detector an export's sidecar names (``"ood_detector": {"file": ...}``, a POSIX path relative to the
    export's folder: ``<name>.ood.npz`` or ``reports/<source>/ood.npz``). The sidecar is data: a name that is not
    such a path (absolute, ``..``, a backslash) is refused, so it can never point the loader elsewhere."""
    export = Path(export)
    rel = PurePosixPath(file) if isinstance(file, str) and not {"\\", "\0"} & set(file) else None
    if rel is None or rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ModelLoadError(f"{sidecar(export).name} names an OOD detector that is not a path inside the "
                             f"export's folder (absolute, or with ..), and is refused. {remedy}")
    return export.parent.joinpath(*rel.parts)


def write_manifest(models_dir: str | Path = MODELS_DIR) -> dict:
    """Record the SHA-256 of every ``*.keras`` and ``*.tflite`` (LiteRT export) in ``models_dir``, the detectors
    ``reports/*/ood.npz`` (which an export in this folder names in its sidecar) and ``<export>.ood.npz`` (an
    export's copy), in its ``MANIFEST.json``: from now on these files, as they are, are the ones to trust."""
    models_dir = Path(models_dir)
    exports = sorted(models_dir.glob("*.tflite"))
    entries = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
               for p in [*sorted(models_dir.glob("*.keras")), *exports]}
    ood = {p.relative_to(models_dir).as_posix(): {"sha256": sha256_file(p)}
           for pattern in ("reports/*/ood.npz", "reports/*/shift_reference.npz")  # per film; per batch (site check)
           for p in sorted(models_dir.glob(pattern))}
    for detector in map(copied_detector_path, exports):
        if detector.is_file():
            ood[detector.name] = {"sha256": sha256_file(detector)}
    manifest = {"models": entries, "ood_detectors": ood}
    (models_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _read_manifest(models_dir: Path) -> dict:
    path = models_dir / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {"models": {}, "ood_detectors": {}}


def record_export(path: str | Path, detector: str | Path | None) -> None:
    """Record a LiteRT export and its detector (a copy beside it, or ``reports/<source>/ood.npz`` under its folder)
    in the manifest beside it (started when the folder has none), as ``python -m pneumo_core export`` writes them,
    so that the runtime, which refuses unlisted files, loads them."""
    path = Path(path)
    manifest = _read_manifest(path.parent)
    manifest.setdefault("models", {})[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    ood = manifest.setdefault("ood_detectors", {})
    ood.pop(copied_detector_path(path).name, None)  # an earlier export's copy
    if detector is not None and Path(detector).is_file():
        key = Path(os.path.abspath(detector)).relative_to(os.path.abspath(path.parent)).as_posix()
        ood[key] = {"sha256": sha256_file(detector)}
    (path.parent / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def record_ood_detector(models_dir: str | Path, detector: str | Path) -> None:
    """Record a refitted detector's SHA-256 in the manifest beside the model (started when there is none),
    so the next load accepts the detector it was just given (and still refuses any other)."""
    models_dir, detector = Path(models_dir), Path(detector)
    manifest = _read_manifest(models_dir)
    manifest.setdefault("ood_detectors", {})[detector.relative_to(models_dir).as_posix()] = {
        "sha256": sha256_file(detector)}
    (models_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def load_model(model: str | Path | None = None, verify: bool = True, sha256: str | None = None):
    """Load a ``.keras`` classifier with ``safe_mode=True`` (no arbitrary code), when ``verify`` only if
    ``MANIFEST.json`` beside it lists it with its SHA-256 (``sha256``: the file's digest if the caller already
    has it)."""
    import keras

    path = resolve_model_path(model)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if verify:
        verify_against_manifest(path, sha256=sha256)
    import zipfile

    if path.suffix == ".keras" and not zipfile.is_zipfile(path):  # Keras would call it "File not found"
        raise ModelLoadError(f"{path.name} is not a Keras model file (a .keras file is a zip archive); "
                             "it may be truncated or another kind of file")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad archive
        raise ModelLoadError(f"could not load model {path.name}: {first_line(exc)}") from exc
