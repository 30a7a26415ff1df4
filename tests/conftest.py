"""Shared fixtures, and the kind markers (one folder per kind: unit, pages, browser, integration).

Real-data tests read the Kermany set from ``PNEUMO_DATA_DIR`` (default ``../shared/data/chest_xray``);
where it is absent they skip, unless ``PNEUMO_REQUIRE_DATA=1`` (set by ``.ci/run``) turns the skip into a
failure."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from pneumo_core.config import backbone_weights, data_dir
from tests.helpers.support import require

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
KINDS = ("unit", "pages", "browser", "integration")  # the folders under tests/, each a marker of its tests


def pytest_configure(config):
    """No test reaches the user's own project database (quiz, audit trail, reads): every process the suite starts,
    servers included, defaults to a throwaway SQLite file; tests that need their own set ``PNEUMO_DB_URL``."""
    os.environ["PNEUMO_DB_URL"] = f"sqlite:///{Path(tempfile.mkdtemp(prefix='pneumo-tests-')) / 'project.sqlite3'}"


@pytest.fixture(autouse=True)
def private_database(tmp_path_factory, monkeypatch):
    """Each test its own empty project database (audit rows, reads and quizzes of one test never meet another's)."""
    monkeypatch.setenv("PNEUMO_DB_URL", f"sqlite:///{tmp_path_factory.mktemp('db') / 'project.sqlite3'}")


def pytest_collection_modifyitems(config, items):
    """Every test carries the marker of its folder (tests/unit -> ``unit``), so ``-m`` can pick kinds."""
    for item in items:
        kind = Path(str(item.path)).relative_to(ROOT / "tests").parts[0]
        if kind in KINDS:
            item.add_marker(kind)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = data_dir()
    require((root / "test" / "NORMAL").is_dir(), f"Kermany data not found at {root} (set PNEUMO_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def test_normal(data_root) -> Path:
    return sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[0]


@pytest.fixture(scope="session")
def test_pneumonia(data_root) -> Path:
    return sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[0]


@pytest.fixture(scope="session")
def local_weights() -> str:
    w = backbone_weights()
    require(w != "imagenet" and Path(w).is_file(), "offline ImageNet weights not found (set PNEUMO_WEIGHTS)")
    return w


@pytest.fixture(scope="session")
def shipped_predictor():
    """The shipped fine-tuned model on the default backend (LiteRT: models/finetuned.tflite), loaded once for the
    whole session."""
    from pneumo_core.inference.predictor import Predictor

    return Predictor("finetuned")


@pytest.fixture(scope="session")
def shipped_keras_predictor():
    """The shipped fine-tuned model on the Keras backend (models/finetuned.keras: ``.model`` is the Keras model)."""
    from pneumo_core.inference.predictor import Predictor

    return Predictor("finetuned", kind="keras")


@pytest.fixture(scope="session")
def tiny_model():
    """A randomly initialised classifier: no weights file needed, builds in seconds."""
    from pneumo_core.training.builders import build_model

    return build_model("finetuned", weights=None)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A real Orthanc (tests/orthanc.py: its own network namespace, reached through a loopback
    relay) for the tests of one module, or a skip with the reason it cannot run here (CI: a failure)."""
    from tests.helpers import orthanc as orthanc_helper

    reason = orthanc_helper.missing()
    require(reason is None, reason or "")
    with orthanc_helper.running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
