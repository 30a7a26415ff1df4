"""The inference pipeline: decode -> model input -> backend -> heatmap -> OOD check and label.

:class:`Predictor` composes a model backend (:mod:`backends`: LiteRT or Keras, see :func:`backends.choose_kind`)
with the model's decision threshold and its out-of-distribution detector, and runs every image through
the same steps, each once:

1. :func:`decode`: bytes, a path or an already decoded film -> the film, or the one-line reason there
   is none (the only decode: a caller never decodes again to word an error);
2. :func:`preprocess.model_input` (blank images are refused here);
3. the backend: scores, with the raw 7x7 Grad-CAM map when asked;
4. the display copy and the heatmap at the size the caller shows (``display_size``), the heatmap
   computed straight from the 7x7 map at that shape;
5. the OOD check, then the label at the threshold.

The result is an immutable :class:`Prediction`. Bad input never raises: its reason is in
``Prediction.error``. :meth:`Predictor.predict_files` is the batch path of the CLI: threaded decoding
overlapped with batched inference, no images kept.
"""
from __future__ import annotations

import json
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pneumo_core.config import label_at
from pneumo_core.errors import ImageError
from pneumo_core.imaging.decode import LoadedImage, load_image, load_path
from pneumo_core.inference.backends import GRADCAM_UNAVAILABLE, ModelBackend, open_backend
from pneumo_core.inference.ood import OOD_REASON, MahalanobisOOD
from pneumo_core.inference.prediction import Prediction, display_copy, heatmap_at
from pneumo_core.inference.preprocess import model_input

__all__ = ["Prediction", "Predictor", "decode"]


def decode(source, name: str) -> tuple[LoadedImage | None, str | None]:
    """Step 1: ``source`` (bytes, a path, or a :class:`LoadedImage` decoded elsewhere) -> (the film,
    None), or (None, the one-line reason it cannot be read)."""
    if isinstance(source, LoadedImage):
        return source, None
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return load_image(bytes(source), name), None
        return load_path(source), None
    except ImageError as exc:
        return None, str(exc)


def _threshold(given: float | None, info: dict, exported: float | None) -> tuple[float, str]:
    """``given`` if any, else the validation-chosen one in ``training.json`` (or in an export's sidecar),
    else 0.5; with its source ("given", "validation" or "default"), so no report calls a fallback 0.5
    the validation rule."""
    if given is not None:
        threshold, source = given, "given"
    elif info.get("threshold") is not None:
        threshold, source = info["threshold"], "validation"
    elif exported is not None:
        threshold, source = exported, "validation"
    else:
        threshold, source = 0.5, "default"
    threshold = float(threshold)
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    return threshold, source


class Predictor:
    """A classifier ready to score films: a backend, its threshold and its OOD detector.

    ``model``: a shipped variant name (``"finetuned"``, ``"frozen"``; None for the default), run on LiteRT
    (``models/<name>.tflite``) where ``ai_edge_litert`` is installed, else on Keras (``models/<name>.keras``),
    unless ``PNEUMO_BACKEND`` or ``kind`` ("keras" or "litert") says; or a ``.keras`` or ``.tflite`` path.
    ``threshold``: overrides the validation-chosen one. ``verify``: check the files against their
    manifest and sidecar. ``backend``: an already opened :class:`backends.ModelBackend` instead of a file;
    ``keras_model``: an in-memory Keras classifier (training, tests). ``ood``: a detector instead of the
    model's own. Other options go to the backend (``num_threads``, ``interpreters``, ``use``, ``xnnpack`` for
    LiteRT: :class:`litert.LiteRTBackend`)."""

    def __init__(self, model: str | Path | None = None, threshold: float | None = None, verify: bool = True, *,
                 kind: str | None = None, backend: ModelBackend | None = None, keras_model=None,
                 ood: MahalanobisOOD | None = None, warm_up: bool = True, **backend_options):
        if backend is None:
            backend = open_backend(model, kind, verify=verify, keras_model=keras_model, warm_up=warm_up,
                                   **backend_options)
        self.backend = backend
        rd = backend.report_dir
        self.info = json.loads((rd / "training.json").read_text()) if rd and (rd / "training.json").exists() else {}
        self.threshold, self.threshold_source = _threshold(threshold, self.info, backend.exported_threshold)
        self.ood = ood if ood is not None else backend.load_ood()

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, backend={self.backend.kind}, threshold={self.threshold:.3f})"

    # ------------------------------------------------------------ what the backend knows
    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def path(self) -> Path | None:
        return self.backend.path

    @property
    def sha256(self) -> str | None:
        return self.backend.sha256

    @property
    def has_gradcam(self) -> bool:
        return self.backend.has_gradcam

    @property
    def report_dir(self) -> Path | None:
        """The model's reports folder (``reports/<name>/`` beside it), or None for an in-memory model."""
        return self.backend.report_dir

    @property
    def model(self):
        """The Keras model behind a Keras backend (None for LiteRT)."""
        return getattr(self.backend, "model", None)

    @property
    def operating_points(self) -> dict:
        """Validation-chosen thresholds by name (from ``training.json``); {} when none."""
        return self.info.get("operating_points", {})

    def label_for(self, p: float) -> str:
        """The label of score ``p`` at this predictor's threshold (:func:`config.label_at`)."""
        return label_at(p, self.threshold)

    # ------------------------------------------------------------ model inputs
    def predict_arrays(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Model inputs (B,224,224,3) -> (p_pneumonia (B,), pooled features (B, 1280 per ensemble member))."""
        return self.backend.scores(x)

    def explain_arrays(self, x: np.ndarray):
        """Model inputs -> (p_pneumonia, raw 7x7 Grad-CAM maps, pooled features)."""
        return self.backend.explain(x)

    def _verdict(self, p: float, pooled: np.ndarray | None, reject_ood: bool = True, dist: float | None = None) -> dict:
        """Step 5: the OOD check (when the model has a detector and features), then the label."""
        fields = {}
        if self.ood is not None and pooled is not None:
            dist = float(self.ood.distance(pooled)[0]) if dist is None else float(dist)
            fields = {"ood_distance": round(dist, 2), "is_chest_xray": dist <= self.ood.threshold}
            if not fields["is_chest_xray"] and reject_ood:
                return {**fields, "error": OOD_REASON.format(d=dist, t=self.ood.threshold)}
        return {**fields, "p_pneumonia": float(p), "label": self.label_for(p)}

    # ------------------------------------------------------------ one image
    def predict(self, source, name: str | None = None, explain: bool = False, keep_image: bool = False,
                display_size: int | None = None) -> Prediction:
        """One image: ``source`` is bytes, a path, or a :class:`LoadedImage`. Never raises for bad input:
        the reason is in ``Prediction.error``.

        ``explain``: with the Grad-CAM heatmap (a backend without one gives the label and a note).
        ``explain`` or ``keep_image``: with the display copy of the film (``Prediction.film``), its longest
        side at most ``display_size`` px (None: the film's own size), the heatmap at exactly its shape."""
        file = name or (str(source) if isinstance(source, (str, Path)) else "upload")
        film, reason = decode(source, file)
        try:
            x = model_input(film)[None] if film is not None else None
        except ImageError as exc:
            reason = str(exc)
        if reason is not None:
            return Prediction(file=file, threshold=self.threshold, model=self.name, error=reason)
        notes = list(film.notes)
        if explain and not self.backend.has_gradcam:
            explain, keep_image = False, True
            notes.append(GRADCAM_UNAVAILABLE)
        if explain:
            p, cam, pooled = self.backend.explain(x)
        else:
            (p, pooled), cam = self.backend.scores(x), None
        shown = display_copy(film, display_size) if explain or keep_image else None
        heatmap = heatmap_at(cam[0], shown.pixels.shape) if cam is not None else None
        return Prediction(file=file, threshold=self.threshold, model=self.name, notes=notes, film=shown,
                          heatmap=heatmap, **self._verdict(p[0], pooled[:1] if pooled is not None else None))

    # ------------------------------------------------------------ many files
    def predict_files(self, paths, batch_size: int | None = None, workers: int = 4,
                      reject_ood: bool = True) -> list[Prediction]:
        """Many files: parallel decode (threads; Pillow and OpenCV release the GIL) overlapped with
        batched inference. A bad file gets its own error and never stops the others; no image is kept.
        ``reject_ood=False`` scores every readable image (evaluation) and only flags OOD ones. ``batch_size``:
        films per forward pass (None: the backend's fastest)."""
        batch_size = batch_size or self.backend.batch_size
        paths = [str(p) for p in paths]
        outcomes: list[dict] = [{} for _ in paths]

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
                    outcomes[i] = {"error": err}
                    continue
                if batch_x is None:
                    batch_x = np.empty((batch_size, *x.shape), np.float32)
                batch_x[len(batch_idx)] = x
                batch_idx.append(i)
                if len(batch_idx) == batch_size:
                    self._run_batch(outcomes, batch_idx, batch_x, reject_ood)
                    batch_idx = []
            if batch_idx:
                self._run_batch(outcomes, batch_idx, batch_x[: len(batch_idx)], reject_ood)
        return [Prediction(file=path, threshold=self.threshold, model=self.name, **outcome)
                for path, outcome in zip(paths, outcomes)]

    def _run_batch(self, outcomes, idx, xs, reject_ood):
        p, pooled = self.backend.scores(xs)
        checked = self.ood is not None and pooled is not None
        dist = self.ood.distance(pooled) if checked else [None] * len(idx)  # one call per batch
        for k, i in enumerate(idx):
            outcomes[i] = self._verdict(p[k], pooled[k : k + 1] if pooled is not None else None, reject_ood, dist[k])
