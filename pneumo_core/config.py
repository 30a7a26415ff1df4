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


def model_path(variant: str, models_dir: str | Path | None = None, suffix: str = ".keras") -> Path:
    """The file of model ``variant`` in ``models_dir`` (default :data:`MODELS_DIR`): ``<dir>/<variant>.keras``,
    or its shipped LiteRT export with ``suffix=".tflite"``."""
    return Path(models_dir if models_dir is not None else MODELS_DIR) / f"{variant}{suffix}"


#: The backends that run a model: LiteRT (``.tflite``; the runtime's default) and Keras (``.keras``; TensorFlow).
BACKENDS = ("litert", "keras")


def backend_setting() -> str | None:
    """The backend asked for in ``PNEUMO_BACKEND`` (``litert`` or ``keras``), or None when it is not set
    (then LiteRT where ``ai_edge_litert`` is installed, else Keras). Read on every call."""
    value = os.environ.get("PNEUMO_BACKEND", "").strip().lower()
    if value and value not in BACKENDS:
        raise ValueError(f"PNEUMO_BACKEND must be {' or '.join(BACKENDS)}, got {value!r}")
    return value or None


def _positive_int_setting(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def litert_layout(use: str = "batch", cores: int = 1) -> tuple[int, int]:
    """(interpreters, threads per interpreter) of a LiteRT model on ``cores`` cores (docs/design.md, "LiteRT
    threads and interpreters"): ``"batch"`` (the CLI: one job using every core) is one interpreter with ``cores``
    threads; ``"serve"`` (the dashboard: several sessions at once) is one interpreter per core (at most 4), each
    with twice its share of the cores (at most all of them), so that a lone session still uses several cores and
    sessions at once run side by side, oversubscribing the CPU at most twice. ``PNEUMO_LITERT_INTERPRETERS`` and
    ``PNEUMO_LITERT_THREADS`` override either number."""
    cores = max(1, cores)
    pool = 1 if use == "batch" else min(cores, 4)
    pool = _positive_int_setting("PNEUMO_LITERT_INTERPRETERS") or pool
    threads = cores if pool == 1 else max(1, min(cores, 2 * cores // pool))
    return pool, _positive_int_setting("PNEUMO_LITERT_THREADS") or threads


#: What one dashboard session may ask of the server, and what the server does at once (docs/security.md,
#: "Limits"); each overridable by its environment variable (a whole number of at least 1).
DASHBOARD_LIMITS = {
    "PNEUMO_MAX_UPLOADS": 40,  # files scored per browser session
    "PNEUMO_MAX_UPLOAD_MB": 200,  # their total size, MB
    "PNEUMO_MAX_PACS_STUDIES": 50,  # studies listed per PACS search
    "PNEUMO_MAX_PACS_FILMS": 40,  # films retrieved and scored per PACS retrieval
    "PNEUMO_MAX_SCORING": 4,  # films scored at once across all sessions (one LiteRT interpreter each)
    "PNEUMO_SCORING_WAIT_S": 60,  # how long a session waits for a free scoring slot before saying "busy"
}


def dashboard_limit(name: str) -> int:
    """The limit ``name`` of :data:`DASHBOARD_LIMITS`, from its environment variable when set. Read on every call."""
    return _positive_int_setting(name) or DASHBOARD_LIMITS[name]


def hide_file_names_setting() -> bool | None:
    """``PNEUMO_HIDE_FILE_NAMES``: 1 shows uploaded files as ``film <short hash>`` on pages, in the review CSV and
    the report PNG, 0 shows their names; None when unset (the dashboard then decides by where it listens)."""
    value = os.environ.get("PNEUMO_HIDE_FILE_NAMES", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    if value:
        raise ValueError(f"PNEUMO_HIDE_FILE_NAMES must be 1 or 0, got {value!r}")
    return None


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


def server_setting(name: str, environ, secrets) -> object:
    """Setting ``name`` from the environment, else from Streamlit secrets (``secrets``: a mapping, or None in the
    CLI): the environment wins; a blank value counts as unset. Operator-side only, never from a page's user."""
    value = environ.get(name)
    if (value is None or str(value).strip() == "") and secrets is not None:
        try:
            value = secrets.get(name)
        except Exception:  # Streamlit raises when no secrets.toml exists
            value = None
    return value
