"""Where things live (data, backbone weights, shipped models) and the few rules every part shares:
the label at a threshold and the research-use disclaimer.

Every path can be overridden by an environment variable so the CLI, the dashboard and
the tests agree without passing paths around.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent

IMAGE_SIZE = 224
CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # label 0, label 1

#: The shipped models and their reports.
MODELS_DIR = Path(os.environ.get("PNEUMO_MODELS_DIR", PROJECT_DIR / "models"))
SHIPPED_VARIANTS = ("finetuned", "frozen")
DEFAULT_VARIANT = "finetuned"
FINE_TUNE_LAYERS = 30  # top layers of the MobileNetV2 base trained by the fine-tuned variant

#: The research-use disclaimer, once: a short Markdown form for banners and a detail sentence.
DISCLAIMER = "**Research and teaching tool, not a diagnostic device.**"
DISCLAIMER_DETAIL = "Its outputs are not validated for clinical use and must not guide the care of any patient."
#: The short form without Markdown, for pictures and plain-text outputs.
DISCLAIMER_PLAIN = DISCLAIMER.replace("**", "")


def label_at(p: float, threshold: float) -> str:
    """The label of score ``p`` at ``threshold``: PNEUMONIA when ``p >= threshold``, else NORMAL."""
    return CLASS_NAMES[int(float(p) >= float(threshold))]


def model_path(variant: str, models_dir: str | Path | None = None) -> Path:
    """The file of model ``variant`` in ``models_dir`` (default :data:`MODELS_DIR`): ``<dir>/<variant>.keras``."""
    return Path(models_dir if models_dir is not None else MODELS_DIR) / f"{variant}.keras"


def data_dir() -> Path:
    """Kermany-layout dataset root (``DIR/{train,test}/{NORMAL,PNEUMONIA}``)."""
    return Path(os.environ.get("PNEUMO_DATA_DIR", PROJECT_DIR.parent / "shared" / "data" / "chest_xray"))


def backbone_weights() -> str:
    """ImageNet MobileNetV2 weights: a local ``.weights.h5`` path, or ``"imagenet"`` (Keras download).

    ``PNEUMO_WEIGHTS`` wins; otherwise the offline copy beside the checkout is used when it
    exists, and Keras' normal download for everybody else.
    """
    env = os.environ.get("PNEUMO_WEIGHTS")
    if env:
        return env
    local = PROJECT_DIR.parent / "shared" / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5"
    return str(local) if local.exists() else "imagenet"
