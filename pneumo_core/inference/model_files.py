"""Model files: finding, checking (SHA-256 manifest) and safely loading the shipped classifiers and the
OOD detectors in their reports, and taking a loaded classifier apart (backbone and head) for the
compiled inference path and Grad-CAM.
The builders that make these models are in :mod:`pneumo_core.training.builders`.
"""
from __future__ import annotations

import json
from pathlib import Path

from pneumo_core.artifacts import sha256_file
from pneumo_core.config import DEFAULT_VARIANT, MODELS_DIR, SHIPPED_VARIANTS, model_path
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
    if not manifest.exists():
        return None
    entries = json.loads(manifest.read_text())
    key = path.relative_to(models_dir).as_posix()
    for section in ("models", "ood_detectors"):
        entry = entries.get(section, {}).get(key)
        if entry:
            return entry.get("sha256")
    return None


def verify_against_manifest(path: str | Path, models_dir: str | Path | None = None, sha256: str | None = None,
                            remedy: str = "Restore it (git checkout models/) or retrain.", required: bool = False,
                            name: str | None = None) -> None:
    """Refuse a file whose SHA-256 differs from the one its manifest records (``sha256``: the
    file's digest if the caller already has it). Files the manifest does not list pass, unless ``required``
    (a shipped LiteRT export and its detector). ``name``: how the file is named in the message."""
    want = expected_hash(path, models_dir)
    name = name or Path(path).name
    if want is None and required:
        raise ModelLoadError(f"{name} is not listed in {MANIFEST}, so it cannot be checked. {remedy}")
    if want is not None and (sha256 or sha256_file(path)) != want:
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


def _shipped_exports(models_dir: Path) -> list[Path]:
    """The shipped LiteRT exports present in ``models_dir`` (``<variant>.tflite``; other exports are not shipped)."""
    return [p for p in (models_dir / f"{v}.tflite" for v in SHIPPED_VARIANTS) if p.is_file()]


def write_manifest(models_dir: str | Path = MODELS_DIR) -> dict:
    """Record the SHA-256 of every shipped ``*.keras``, ``<variant>.tflite`` (LiteRT export), ``reports/*/ood.npz``
    and ``<variant>.ood.npz`` (the export's detector) in ``MANIFEST.json``."""
    models_dir = Path(models_dir)
    entries = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
               for p in [*sorted(models_dir.glob("*.keras")), *_shipped_exports(models_dir)]}
    ood = {str(p.relative_to(models_dir)): {"sha256": sha256_file(p)}
           for p in sorted(models_dir.glob("reports/*/ood.npz"))}
    for export in _shipped_exports(models_dir):
        detector = export.with_name(export.name[: -len(".tflite")] + ".ood.npz")
        if detector.is_file():
            ood[detector.name] = {"sha256": sha256_file(detector)}
    manifest = {"models": entries, "ood_detectors": ood}
    (models_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def record_export(path: str | Path, detector: str | Path | None) -> bool:
    """Record a shipped LiteRT export (``<models dir>/<variant>.tflite``) and its detector in the manifest beside
    it, as ``python -m pneumo_core export`` writes them; other files and folders without a manifest are left
    alone. Returns True when the manifest was updated."""
    path = Path(path)
    if shipped_litert_variant(path) is None:
        return False
    manifest_path = path.parent / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("models", {})[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    ood = manifest.setdefault("ood_detectors", {})
    stale = path.name[: -len(".tflite")] + ".ood.npz"
    ood.pop(stale, None)
    if detector is not None and Path(detector).is_file():
        ood[Path(detector).name] = {"sha256": sha256_file(detector)}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return True


def record_ood_detector(models_dir: str | Path, detector: str | Path) -> None:
    """Record a refitted detector's SHA-256 in the manifest beside the model, if there is one,
    so the next load accepts the detector it was just given (and still refuses any other)."""
    models_dir, detector = Path(models_dir), Path(detector)
    manifest_path = models_dir / MANIFEST
    if not manifest_path.exists():
        return
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("ood_detectors", {})[detector.relative_to(models_dir).as_posix()] = {
        "sha256": sha256_file(detector)}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def load_model(model: str | Path | None = None, verify: bool = True, sha256: str | None = None):
    """Load a ``.keras`` classifier with ``safe_mode=True`` (no arbitrary code), checking its
    SHA-256 against ``MANIFEST.json`` when the file is listed there (``sha256``: the file's
    digest if the caller already has it)."""
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
