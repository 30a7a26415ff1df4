"""The LiteRT backend: an exported ``.tflite`` classifier behind the same pipeline as a Keras one.

``Predictor("models/finetuned.int8.tflite")`` (and the CLI's ``--model PATH.tflite``) runs on a
:class:`LiteRTBackend`. Grad-CAM works when the file carries the ``cam`` output, as every file written by
:mod:`pneumo_core.training.export` does; for a ``.tflite`` without it, ``predict(explain=True)`` returns the
label with no heatmap and says so in ``notes``.

The decision threshold and the OOD detector are the source model's, read from beside the file:
the threshold from the ``<file>.json`` sidecar and the detector from ``<name>.ood.npz``, whose
SHA-256 the sidecar records (a changed or damaged detector is refused), so a set moved together
keeps both. The source's own reports (``reports/<source stem>/``) are used when present (a
threshold chosen again after the export) and for exports written before detectors travelled.
For int8 files both are approximations: the features the detector sees are quantised.

The interpreter is LiteRT's (``ai_edge_litert``) when that package is installed, else
``tf.lite.Interpreter`` (still shipped in TF 2.21, with a deprecation warning that is silenced
here). Calls are serialised with a lock: a TFLite interpreter is not thread-safe.
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from pneumo_core.artifacts import reports_dir, sha256_file, sidecar
from pneumo_core.config import IMAGE_SIZE, model_path
from pneumo_core.errors import ModelLoadError, first_line
from pneumo_core.inference.model_files import report_ood, verify_against_manifest
from pneumo_core.inference.ood import MahalanobisOOD


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_interpreter(path: str | Path, num_threads: int | None = None, xnnpack: bool = True):
    """A LiteRT/TFLite interpreter for ``path`` with ``num_threads`` threads: XNNPACK CPU delegate
    (the default), or TFLite's built-in kernels only (``xnnpack=False``)."""
    num_threads = num_threads or _cpu_count()
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    kw = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return Interpreter(model_path=str(path), num_threads=num_threads, **kw)


class LiteRTBackend:
    """A ``.tflite`` classifier; see the module docstring. ``verify`` checks the file against the
    manifest beside it and against its sidecar's SHA-256."""

    kind = "litert"

    def __init__(self, path: str | Path, *, verify: bool = True, warm_up: bool = True,
                 num_threads: int | None = None, xnnpack: bool = True):
        self.verify = verify
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        self.sha256 = sha256_file(self.path)
        if verify:
            verify_against_manifest(self.path, sha256=self.sha256)
        meta_path = sidecar(self.path)
        try:
            self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        except ValueError:
            raise ModelLoadError(f"{meta_path.name} (the export's sidecar) is not valid JSON; export the "
                                 "model again (python -m pneumo_core export)") from None
        if verify and self.meta.get("sha256") not in (None, self.sha256):
            raise ModelLoadError(f"{self.path.name} does not match the SHA-256 in {meta_path.name}: the file was "
                                 "changed or truncated. Export it again (python -m pneumo_core export).")
        self.name = self.path.name[: -len(".tflite")]
        self.exported_threshold = self.meta.get("threshold")
        self._threads = num_threads
        self.delegate = "xnnpack" if xnnpack else "builtin"
        try:
            self._interp = make_interpreter(self.path, num_threads, xnnpack)
        except Exception as exc:
            raise ModelLoadError(f"could not load TFLite model {self.path.name}: {first_line(exc)}") from exc
        self._lock = threading.Lock()
        self._input = self._interp.get_input_details()[0]
        # Outputs are told apart by rank: p (B,), pooled (B, 1280 per member), cam (B, 7, 7).
        by_rank = {len(d["shape_signature"]): d["index"] for d in self._interp.get_output_details()}
        self._out_p, self._out_pooled, self._out_cam = by_rank.get(1), by_rank.get(2), by_rank.get(3)
        if self._out_p is None:
            raise ModelLoadError(f"{self.path.name} has no (B,) probability output; export it with "
                                 "python -m pneumo_core export")
        self._batch = None
        if warm_up:
            self.warm_up()

    def __repr__(self) -> str:
        return f"LiteRTBackend({self.name!r}, delegate={self.delegate!r})"

    @property
    def report_dir(self) -> Path | None:
        """The source model's reports: ``<dir>/reports/<source stem>/`` beside the .tflite file,
        else beside the source model recorded in the sidecar."""
        stem = self.meta.get("source_name") or self.path.name.split(".")[0]
        local = reports_dir(model_path(stem, self.path.parent))
        if local.is_dir():
            return local
        src = self.meta.get("source_model")
        if src:
            src = Path(src) if Path(src).is_absolute() else Path(os.path.normpath(self.path.parent / src))
            other = reports_dir(src)
            if other.is_dir():
                return other
        return local

    def load_ood(self) -> MahalanobisOOD | None:
        """The detector exported beside this file (its SHA-256 checked against the sidecar), else the
        source model's under its reports (exports written before detectors travelled with them)."""
        entry = self.meta.get("ood_detector")
        if not entry:
            return report_ood(self.report_dir, self.verify)
        path = self.path.parent / entry["file"]
        if not path.is_file():
            raise ModelLoadError(f"{path.name} (the OOD detector exported with {self.path.name}) is missing: "
                                 "keep the .tflite, its .json sidecar and its .ood.npz together, or export again")
        if self.verify and sha256_file(path) != entry.get("sha256"):
            raise ModelLoadError(f"{path.name} does not match the SHA-256 in {sidecar(self.path).name}: the OOD "
                                 "detector was changed or damaged. Export the model again (python -m pneumo_core "
                                 "export).")
        try:
            return MahalanobisOOD.load(path)
        except Exception as exc:  # np.load raises many types for a damaged file
            raise ModelLoadError(f"{path.name} (the OOD detector) cannot be read ({type(exc).__name__}); "
                                 "export the model again") from None

    @property
    def has_gradcam(self) -> bool:
        """True when the file has the Grad-CAM (``cam``) output."""
        return self._out_cam is not None

    def _run(self, x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"expected (B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) model inputs, got {x.shape}")
        with self._lock:
            if self._batch != x.shape[0]:
                self._resize(x.shape)
            self._interp.set_tensor(self._input["index"], x)
            self._interp.invoke()
            get = self._interp.get_tensor
            p = get(self._out_p).copy()
            pooled = get(self._out_pooled).copy() if self._out_pooled is not None else None
            cam = get(self._out_cam).copy() if self._out_cam is not None else None
        return p, cam, pooled

    def _resize(self, shape):
        """Plan the interpreter for batch ``shape[0]`` (under the lock). XNNPACK refuses a few
        quantised graphs (degenerate quantisation ranges, seen on random test models):
        TFLite's built-in kernels then run the same file, slower."""
        try:
            self._interp.resize_tensor_input(self._input["index"], list(shape))
            self._interp.allocate_tensors()
        except RuntimeError:
            if self.delegate != "xnnpack":
                raise
            self._interp = make_interpreter(self.path, self._threads, xnnpack=False)
            self.delegate = "builtin"
            self._interp.resize_tensor_input(self._input["index"], list(shape))
            self._interp.allocate_tensors()
        self._batch = shape[0]

    def scores(self, x: np.ndarray):
        """Model inputs (B,224,224,3) -> (p_pneumonia (B,), pooled features, or None without that output)."""
        p, _, pooled = self._run(x)
        return p, pooled

    def explain(self, x: np.ndarray):
        """Model inputs -> (p_pneumonia, raw 7x7 Grad-CAM maps, pooled features or None)."""
        if not self.has_gradcam:
            raise NotImplementedError(f"{self.path.name} has no cam output: Grad-CAM is not available")
        return self._run(x)

    def warm_up(self) -> None:
        """Plan the interpreter for one image now."""
        self.scores(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32))
