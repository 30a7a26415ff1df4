"""Inference on one or many images: label, probability, out-of-distribution check, Grad-CAM.

The compiled path: one ``tf.function`` with a fixed input signature per model, no
``model.predict`` per image (its per-call overhead is several times the model's own compute
on a small CPU). Grad-CAM reuses the same forward pass and adds one backward pass.
"""
from __future__ import annotations

import json
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pneumo_core.artifacts import reports_dir, sha256_file
from pneumo_core.config import IMAGE_SIZE, label_at
from pneumo_core.errors import ImageError, ModelLoadError
from pneumo_core.imaging.decode import LoadedImage, load_image, load_path
from pneumo_core.inference.gradcam import make_explain_fn, normalise_heatmap
from pneumo_core.inference.model_files import (
    BASE_NAME,
    load_model,
    resolve_model_path,
    split_model,
    verify_against_manifest,
)
from pneumo_core.inference.ood import OOD_REASON, MahalanobisOOD
from pneumo_core.inference.preprocess import model_input


@dataclass
class Prediction:
    """The result for one image: label and score, or the reason there is none (``error``)."""

    file: str
    label: str | None = None
    p_pneumonia: float | None = None
    threshold: float | None = None
    error: str | None = None
    is_chest_xray: bool | None = None
    ood_distance: float | None = None
    model: str | None = None
    notes: list = field(default_factory=list)
    image: np.ndarray | None = field(default=None, repr=False)  # display copy (uint8 RGB)
    heatmap: np.ndarray | None = field(default=None, repr=False)  # [0, 1], image size

    def to_json(self) -> dict:
        """The fields of the CLI's JSON output (a stable contract), without the image arrays."""
        return {
            "file": self.file, "label": self.label, "p_pneumonia": self.p_pneumonia, "threshold": self.threshold,
            "is_chest_xray": self.is_chest_xray, "ood_distance": self.ood_distance, "model": self.model,
            "error": self.error, "notes": list(self.notes),
        }


class Predictor:
    """A loaded Keras classifier with its decision threshold and out-of-distribution detector.
    For a file of either kind (``.keras`` or ``.tflite``) use :func:`predictors.open_predictor`."""

    def __init__(self, model: str | Path | None = None, threshold: float | None = None, verify: bool = True,
                 keras_model=None, ood: MahalanobisOOD | None = None, warm_up: bool = True):
        import tensorflow as tf

        self._verify = verify
        if keras_model is None:
            self.path = resolve_model_path(model)
            if self.path.suffix.lower() == ".tflite":
                raise ModelLoadError(f"{self.path.name} is a TFLite file: open it with "
                                     "predictors.open_predictor (or tflite.TFLitePredictor)")
            if not self.path.is_file():
                raise ModelLoadError(f"model file not found: {self.path}")
            self.sha256 = sha256_file(self.path)  # hashed once: checked against the manifest and shown in the UI
            self.model = load_model(self.path, verify=verify, sha256=self.sha256)
        else:
            self.path, self.model, self.sha256 = None, keras_model, None
        self.name = self.path.stem if self.path else self.model.name
        self.info = self._training_info()
        self._set_threshold(threshold)
        self.ood = ood if ood is not None else self._load_ood()
        try:
            backbone, head = split_model(self.model)
        except ValueError:
            raise ModelLoadError(f"{self.name} is a Keras model but not one of this workbench's classifiers "
                                 f"(it has no '{BASE_NAME}' layer)") from None

        @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)],
                     reduce_retracing=True)
        def forward(x):
            fmap = backbone(x, training=False)
            return tf.sigmoid(head(fmap, training=False))[:, 0], tf.reduce_mean(fmap, axis=(1, 2))

        self._forward = forward
        self._explain = make_explain_fn(backbone, head)
        if warm_up:  # trace both graphs now, not on the first user's upload
            zeros = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
            self._forward(zeros)
            self._explain(zeros)

    # ------------------------------------------------------------ metadata
    @property
    def report_dir(self) -> Path | None:
        """The model's reports folder (``reports/<name>/`` beside it), or None for an in-memory model."""
        return reports_dir(self.path) if self.path else None

    def _set_threshold(self, threshold: float | None, exported: float | None = None) -> None:
        """``threshold`` if given, else the validation-chosen one in ``training.json`` (or in an
        export's sidecar, ``exported``), else 0.5; ``threshold_source`` ("given",
        "validation" or "default") says which, so no report calls a fallback 0.5 the validation rule."""
        if threshold is not None:
            source = "given"
        elif self.info.get("threshold") is not None:
            threshold, source = self.info["threshold"], "validation"
        elif exported is not None:
            threshold, source = exported, "validation"
        else:
            threshold, source = 0.5, "default"
        threshold = float(threshold)
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        self.threshold, self.threshold_source = threshold, source

    def _training_info(self) -> dict:
        rd = self.report_dir
        if rd is not None and (rd / "training.json").exists():
            return json.loads((rd / "training.json").read_text())
        return {}

    def _load_ood(self) -> MahalanobisOOD | None:
        rd = self.report_dir
        if rd is None or not (rd / "ood.npz").exists():
            return None
        path = rd / "ood.npz"
        if self._verify:  # the manifest of the models folder that holds reports/<name>/
            verify_against_manifest(path, models_dir=rd.parent.parent,
                                    remedy="Restore it or recalibrate (python -m pneumo_core calibrate-ood).")
        return MahalanobisOOD.load(path)

    @property
    def operating_points(self) -> dict:
        """Validation-chosen thresholds by name (from ``training.json``); {} when none."""
        return self.info.get("operating_points", {})

    # ------------------------------------------------------------ batch arrays
    def predict_arrays(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs (B,224,224,3) -> (p_pneumonia (B,), pooled features (B, 1280 per ensemble member))."""
        p, pooled = self._forward(np.asarray(x, np.float32))
        return p.numpy(), pooled.numpy()

    def explain_arrays(self, x: np.ndarray):
        """Model inputs -> (p_pneumonia, raw 7x7 Grad-CAM maps, pooled features)."""
        p, cam, pooled = self._explain(np.asarray(x, np.float32))
        return p.numpy(), cam.numpy(), pooled.numpy()

    def label_for(self, p: float) -> str:
        """The label of score ``p`` at this predictor's threshold (:func:`config.label_at`)."""
        return label_at(p, self.threshold)

    def _finish(self, pred: Prediction, p: float, pooled: np.ndarray, reject_ood: bool = True,
                dist: float | None = None) -> Prediction:
        if self.ood is not None:
            dist = float(self.ood.distance(pooled)[0]) if dist is None else float(dist)
            pred.ood_distance = round(dist, 2)
            pred.is_chest_xray = dist <= self.ood.threshold
            if not pred.is_chest_xray and reject_ood:
                pred.error = OOD_REASON.format(d=dist, t=self.ood.threshold)
                return pred
        pred.p_pneumonia = float(p)
        pred.label = self.label_for(p)
        return pred

    # ------------------------------------------------------------ single image
    def predict(self, source, name: str | None = None, explain: bool = False, keep_image: bool = False) -> Prediction:
        """One image: ``source`` is bytes, a path, or a :class:`LoadedImage`. Never raises for bad
        input: the reason is in ``Prediction.error``."""
        label = name or (str(source) if isinstance(source, (str, Path)) else "upload")
        pred = Prediction(file=label, threshold=self.threshold, model=self.name)
        try:
            if isinstance(source, LoadedImage):
                loaded = source
            elif isinstance(source, (bytes, bytearray, memoryview)):
                loaded = load_image(bytes(source), label)
            else:
                loaded = load_path(source)
            x = model_input(loaded)[None]
        except ImageError as exc:
            pred.error = str(exc)
            return pred
        pred.notes = list(loaded.notes)
        if keep_image or explain:
            pred.image = loaded.rgb()
        if explain:
            p, cam, pooled = self.explain_arrays(x)
            pred.heatmap = normalise_heatmap(cam[0], loaded.pixels.shape[:2])
        else:
            p, pooled = self.predict_arrays(x)
        return self._finish(pred, p[0], pooled)

    # ------------------------------------------------------------ many files
    def predict_files(self, paths, batch_size: int = 32, workers: int = 4, reject_ood: bool = True) -> list[Prediction]:
        """Many files: parallel decode (threads; Pillow and OpenCV release the GIL) overlapped with
        batched inference. A bad file gets its own error and never stops the others.
        ``reject_ood=False`` scores every readable image (evaluation) and only flags OOD ones."""
        paths = [str(p) for p in paths]
        results: list[Prediction] = [Prediction(file=p, threshold=self.threshold, model=self.name) for p in paths]

        def load(i):
            try:
                return i, model_input(load_path(paths[i])), None
            except ImageError as exc:
                return i, None, str(exc)
            except Exception as exc:  # a file must never stop the batch
                return i, None, f"could not process file ({type(exc).__name__})"

        def decoded():
            """Decoded images in order, at most ``window`` ahead of inference: ``pool.map`` would
            decode the whole folder into memory first (600 KB an image, 6 GB for 10,000 files)."""
            window = 2 * batch_size + workers
            pending = deque()
            for i in range(len(paths)):
                pending.append(pool.submit(load, i))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            # One batch buffer, reused: np.stack of 32 inputs allocates 19 MB a batch, and the page
            # faults on that fresh memory cost ~7 ms a batch (4 % of the throughput on 2 cores).
            batch_idx, batch_x = [], None
            for i, x, err in decoded():
                if err is not None:
                    results[i].error = err
                    continue
                if batch_x is None:
                    batch_x = np.empty((batch_size, *x.shape), np.float32)
                batch_x[len(batch_idx)] = x
                batch_idx.append(i)
                if len(batch_idx) == batch_size:
                    self._run_batch(results, batch_idx, batch_x, reject_ood)
                    batch_idx = []
            if batch_idx:
                self._run_batch(results, batch_idx, batch_x[: len(batch_idx)], reject_ood)
        return results

    def _run_batch(self, results, idx, xs, reject_ood):
        p, pooled = self.predict_arrays(xs if isinstance(xs, np.ndarray) else np.stack(xs))
        dist = self.ood.distance(pooled) if self.ood is not None else [None] * len(idx)  # one call per batch
        for k, i in enumerate(idx):
            self._finish(results[i], p[k], pooled[k : k + 1], reject_ood, dist[k])
