"""Pneumonia chest X-ray workbench library: imaging, inference, training, evaluation, review, pacs and quiz.

The names a notebook needs are here, imported on first use (so ``import pneumo_core.imaging`` or the
CLI's ``--help`` never loads TensorFlow)::

    from pneumo_core import Predictor
    pred = Predictor("finetuned").predict(open("film.jpeg", "rb").read(), name="film.jpeg", explain=True)

See docs/api.md.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> the module that defines it
_EXPORTS = {
    "Predictor": "pneumo_core.inference.predictor",
    "Prediction": "pneumo_core.inference.prediction",
    "open_backend": "pneumo_core.inference.backends",
    "overlay": "pneumo_core.inference.gradcam",
    "load_image": "pneumo_core.imaging.decode",
    "load_path": "pneumo_core.imaging.decode",
    "LoadedImage": "pneumo_core.imaging.core",
    "ImageError": "pneumo_core.errors",
    "ModelLoadError": "pneumo_core.errors",
    "DISCLAIMER_PLAIN": "pneumo_core.config",
}
__all__ = ["DISCLAIMER_PLAIN", "ImageError", "LoadedImage", "ModelLoadError", "Prediction", "Predictor", "load_image",
           "load_path", "open_backend", "overlay"]  # == sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from pneumo_core.config import DISCLAIMER_PLAIN
    from pneumo_core.errors import ImageError, ModelLoadError
    from pneumo_core.imaging.core import LoadedImage
    from pneumo_core.imaging.decode import load_image, load_path
    from pneumo_core.inference.backends import open_backend
    from pneumo_core.inference.gradcam import overlay
    from pneumo_core.inference.prediction import Prediction
    from pneumo_core.inference.predictor import Predictor


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pneumo_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
