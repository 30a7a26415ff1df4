"""Model backends: what the inference pipeline asks of a classifier, whatever runs it.

A backend takes model inputs, float32 (B, 224, 224, 3) in [-1, 1] (:func:`preprocess.model_input`),
and returns the scores, or the scores with the raw 7x7 Grad-CAM maps; it also knows its file (name,
path, SHA-256) and where the threshold and the OOD detector that belong to it are kept (the source
model's reports folder, or an export's sidecar). Everything else, from decoding to labels and the
images a page shows, is the pipeline's (:class:`predictor.Predictor`), the same for every backend.

* :class:`KerasBackend`: a ``.keras`` classifier, run as one compiled ``tf.function`` for scores and one
  for scores with Grad-CAM: no ``model.predict`` per image (its per-call overhead is several times the
  model's own compute on a small CPU). Grad-CAM reuses the forward pass and adds one backward pass.
* :class:`litert.LiteRTBackend`: an exported ``.tflite`` file (see :mod:`litert`).
* :func:`open_backend`: one of them for a file, by its suffix (or an explicit ``kind``); a shipped variant
  name runs on :func:`choose_kind`'s backend: LiteRT where ``ai_edge_litert`` is installed, else Keras,
  unless ``PNEUMO_BACKEND`` or ``kind`` says.

TensorFlow is imported when a Keras backend is built, never by importing this module; the runtime
(requirements.txt) has none, and asking it for the Keras backend is one :class:`MissingDependency` line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from pneumo_core.artifacts import reports_dir, sha256_file
from pneumo_core.config import IMAGE_SIZE, SHIPPED_VARIANTS, backend_setting
from pneumo_core.errors import MissingDependency, ModelLoadError
from pneumo_core.inference.gradcam import make_explain_fn
from pneumo_core.inference.litert import LiteRTBackend, installed, litert_available
from pneumo_core.inference.model_files import BASE_NAME, load_model, report_ood, resolve_model_path, split_model
from pneumo_core.inference.ood import MahalanobisOOD

KINDS = ("keras", "litert")
#: What a user runs to get TensorFlow (training, export, the Keras backend).
TRAIN_INSTALL = "pip install -r requirements-train.txt"


def tensorflow_available() -> bool:
    """True when TensorFlow and Keras are installed (requirements-train.txt), without importing them."""
    return installed("tensorflow") and installed("keras")


def choose_kind(model: str | Path | None = None, kind: str | None = None) -> str:
    """The backend that runs ``model``: ``kind`` when given; for a path, its suffix (``.tflite``: LiteRT, else
    Keras); for a shipped variant name (or None), ``PNEUMO_BACKEND``, else LiteRT where ``ai_edge_litert`` is
    installed, else Keras (never Keras when LiteRT was asked for)."""
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown backend kind {kind!r}; expected one of {', '.join(KINDS)}")
        return kind
    name = str(model) if model is not None else None
    if name is not None and name not in SHIPPED_VARIANTS:
        return "litert" if Path(name).suffix.lower() == ".tflite" else "keras"
    setting = backend_setting()
    if setting is not None:
        return setting
    return "litert" if litert_available() or not tensorflow_available() else "keras"
#: The note on a result asked for with Grad-CAM from a backend that has none (a foreign ``.tflite``).
GRADCAM_UNAVAILABLE = "Grad-CAM is not available for this TFLite model (it has no cam output); label only"


@runtime_checkable
class ModelBackend(Protocol):
    """What :class:`predictor.Predictor` needs from a model, whatever runs it."""

    kind: str  # one of KINDS
    batch_size: int  # films per forward pass in the batch path when the caller names none (measured fastest)
    name: str  # shown in results and reports: the file name without its suffix
    path: Path | None  # None for a model held only in memory
    sha256: str | None  # of the file, hashed once
    #: The decision threshold written into an export's sidecar (None for a ``.keras`` file): used when the
    #: reports folder has no ``training.json``.
    exported_threshold: float | None

    @property
    def has_gradcam(self) -> bool:
        """True when :meth:`explain` works."""

    @property
    def report_dir(self) -> Path | None:
        """The source model's reports folder (``training.json``: threshold, operating points)."""

    def load_ood(self) -> MahalanobisOOD | None:
        """The out-of-distribution detector that belongs to this model, checked; None when it has none."""

    def scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Model inputs (B,224,224,3) -> (p_pneumonia (B,), pooled features (B, 1280 per member) or None)."""

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Model inputs -> (p_pneumonia (B,), raw Grad-CAM maps (B, 7, 7), pooled features or None)."""

    def warm_up(self) -> None:
        """Run once on a blank input, so the first real image does not pay for tracing or planning."""


class KerasBackend:
    """A ``.keras`` classifier of this workbench (a ``mobilenetv2_base`` layer, then the head), from a
    file (``model``: a shipped variant name or a path; checked against the manifest when ``verify``) or
    an in-memory ``keras_model`` (training and tests)."""

    kind = "keras"
    batch_size = 32  # TensorFlow's CPU kernels: 32 as fast as any (docs/benchmarks.md)
    exported_threshold = None
    has_gradcam = True

    def __init__(self, model: str | Path | None = None, *, verify: bool = True, keras_model=None,
                 warm_up: bool = True):
        if keras_model is None and not tensorflow_available():
            raise MissingDependency(f"the Keras backend ({resolve_model_path(model).name}) needs TensorFlow: "
                                    f"{TRAIN_INSTALL}; or run the LiteRT export (--backend litert)")
        import tensorflow as tf

        self.verify = verify
        if keras_model is None:
            self.path = resolve_model_path(model)
            if self.path.suffix.lower() == ".tflite":
                raise ModelLoadError(f"{self.path.name} is a TFLite file: open it with Predictor(path) or "
                                     "open_backend(path), which pick the LiteRT backend")
            if not self.path.is_file():
                raise ModelLoadError(f"model file not found: {self.path}")
            self.sha256 = sha256_file(self.path)  # hashed once: checked against the manifest and shown in the UI
            self.model = load_model(self.path, verify=verify, sha256=self.sha256)
        else:
            self.path, self.model, self.sha256 = None, keras_model, None
        self.name = self.path.stem if self.path else self.model.name
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
        if warm_up:
            self.warm_up()

    def __repr__(self) -> str:
        return f"KerasBackend({self.name!r})"

    @property
    def report_dir(self) -> Path | None:
        """``reports/<name>/`` beside the file; None for an in-memory model."""
        return reports_dir(self.path) if self.path else None

    def load_ood(self) -> MahalanobisOOD | None:
        """``reports/<name>/ood.npz``, checked against the manifest of the models folder when ``verify``."""
        return report_ood(self.report_dir, self.verify)

    def scores(self, x: np.ndarray):
        p, pooled = self._forward(np.asarray(x, np.float32))
        return p.numpy(), pooled.numpy()

    def explain(self, x: np.ndarray):
        p, cam, pooled = self._explain(np.asarray(x, np.float32))
        return p.numpy(), cam.numpy(), pooled.numpy()

    def warm_up(self) -> None:
        """Trace both graphs now, not on the first user's upload."""
        zeros = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
        self._forward(zeros)
        self._explain(zeros)


def open_backend(model: str | Path | None = None, kind: str | None = None, **options) -> ModelBackend:
    """The backend for ``model``: a shipped variant name (``finetuned``, ``frozen``; None for the default) on
    :func:`choose_kind`'s backend (its ``.tflite`` or its ``.keras`` file), or a ``.keras`` or ``.tflite`` path,
    picked by suffix unless ``kind`` ("keras" or "litert") says. ``options`` go to the backend: ``verify`` and
    ``warm_up`` for both, ``keras_model`` (an in-memory model instead of a file) for Keras, ``num_threads``,
    ``interpreters``, ``use`` and ``xnnpack`` for LiteRT (the Keras backend ignores these)."""
    if options.get("keras_model") is not None:
        if kind not in (None, "keras"):
            raise TypeError("an in-memory Keras model runs on the Keras backend; pass a .tflite path for LiteRT")
        return KerasBackend(**_keras_options(options))
    options.pop("keras_model", None)
    kind = choose_kind(model, kind)
    path = resolve_model_path(model, kind)
    if kind == "litert":
        if path.suffix.lower() == ".keras":
            raise ModelLoadError(f"{path.name} is a Keras file; the LiteRT backend runs its export: python -m "
                                 f"pneumo_core export --model {path} writes {path.with_suffix('.tflite').name}")
        return LiteRTBackend(path, **options)
    return KerasBackend(path, **_keras_options(options))


def _keras_options(options: dict) -> dict:
    """``options`` without the LiteRT-only ones (thread and pool settings mean nothing to Keras)."""
    return {k: v for k, v in options.items() if k not in ("num_threads", "interpreters", "use", "xnnpack")}
