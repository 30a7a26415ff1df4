"""Models fail closed: a model or detector file that its folder's MANIFEST.json does not list, or lists with
another SHA-256, is refused in one line naming the file and the fix (library, CLI exit 2, the page); a model the
user made is trusted once recorded with ``python -m pneumo_core manifest --dir``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pneumo_core.errors import ModelLoadError
from pneumo_core.inference.model_files import MANIFEST, expected_hash, record_export, write_manifest
from pneumo_core.inference.predictor import Predictor
from tests.unit.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def _own_export(tmp_path: Path) -> Path:
    """A real shipped export copied to a folder of the user's, as they would keep their own model (its detector as
    the copy an export to another folder writes): no manifest."""
    folder = tmp_path / "my_models"
    folder.mkdir()
    for name in ("frozen.tflite", "frozen.tflite.json"):
        shutil.copy(MODELS / name, folder / name.replace("frozen", "mine"))
    shutil.copy(MODELS / "reports" / "frozen" / "ood.npz", folder / "mine.ood.npz")
    sidecar = folder / "mine.tflite.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "ood_detector": {
        **json.loads(sidecar.read_text())["ood_detector"], "file": "mine.ood.npz"}}))
    return folder / "mine.tflite"


def _one_line(res, *words: str) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and res.stdout == "" and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_a_model_in_a_folder_without_a_manifest_is_refused_until_recorded(tmp_path, test_normal):
    model = _own_export(tmp_path)
    with pytest.raises(ModelLoadError) as err:
        Predictor(model, warm_up=False)
    message = str(err.value)
    assert "\n" not in message and "mine.tflite is not listed in MANIFEST.json" in message
    assert "python -m pneumo_core manifest --dir my_models" in message and str(tmp_path) not in message
    _one_line(run_cli("predict", "--json", "--model", model, test_normal), "mine.tflite is not listed",
              "manifest --dir")

    written = write_manifest(model.parent)  # the deliberate act that trusts one's own files
    assert set(written["models"]) == {"mine.tflite"} and set(written["ood_detectors"]) == {"mine.ood.npz"}
    res = run_cli("predict", "--json", "--model", model, test_normal)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["label"] in ("NORMAL", "PNEUMONIA")


def test_a_model_left_out_of_its_manifest_or_changed_is_refused(tmp_path, test_normal):
    model = _own_export(tmp_path)
    write_manifest(model.parent)
    manifest = json.loads((model.parent / MANIFEST).read_text())
    del manifest["models"]["mine.tflite"]
    (model.parent / MANIFEST).write_text(json.dumps(manifest))
    _one_line(run_cli("predict", "--model", model, test_normal), "mine.tflite is not listed in MANIFEST.json")

    write_manifest(model.parent)
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 3] ^= 0x01  # one flipped bit in the weights
    model.write_bytes(bytes(blob))
    _one_line(run_cli("predict", "--model", model, test_normal), "mine.tflite does not match the SHA-256")


def test_an_unlisted_detector_is_refused_even_when_the_model_is_listed(tmp_path):
    model = _own_export(tmp_path)
    write_manifest(model.parent)
    manifest = json.loads((model.parent / MANIFEST).read_text())
    del manifest["ood_detectors"]["mine.ood.npz"]
    (model.parent / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"mine\.ood\.npz is not listed in MANIFEST\.json"):
        Predictor(model, warm_up=False)


def test_a_manifest_that_is_not_json_lists_nothing(tmp_path):
    model = _own_export(tmp_path)
    (model.parent / MANIFEST).write_text("{not json")
    assert expected_hash(model) is None
    with pytest.raises(ModelLoadError, match="is not listed"):
        Predictor(model, warm_up=False)


def test_export_records_any_export_in_its_folder(tmp_path):
    """What ``export`` does after writing a file (record_export): the folder's manifest is started or updated,
    so the export it just wrote loads, and only as written."""
    model = _own_export(tmp_path)
    record_export(model, model.with_name("mine.ood.npz"))
    manifest = json.loads((model.parent / MANIFEST).read_text())
    assert set(manifest["models"]) == {"mine.tflite"} and set(manifest["ood_detectors"]) == {"mine.ood.npz"}
    assert Predictor(model, warm_up=False).ood is not None
