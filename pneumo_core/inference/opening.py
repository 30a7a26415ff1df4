"""Opening a classifier file of either kind: ``.keras`` (Keras, with Grad-CAM) or ``.tflite`` (LiteRT).

The choice is made here, by file suffix, so neither predictor class has to know about the other's
file format and ``infer.Predictor(path)`` is always a Keras predictor.
"""
from __future__ import annotations

from pathlib import Path

from pneumo_core.inference.model_files import resolve_model_path
from pneumo_core.inference.predictor import Predictor
from pneumo_core.inference.tflite import TFLitePredictor


def open_predictor(model: str | Path | None = None, **options) -> Predictor:
    """A predictor for ``model``: a shipped variant name (``finetuned``, ``frozen``; ``None`` for the
    default), a ``.keras`` path, or a ``.tflite`` path. ``options`` go to the predictor's constructor
    (``threshold``, ``verify``, ``warm_up``; ``num_threads`` and ``xnnpack`` for TFLite)."""
    path = resolve_model_path(model)
    if path.suffix.lower() == ".tflite":
        return TFLitePredictor(path, **options)
    return Predictor(path, **options)
