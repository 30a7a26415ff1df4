"""Not-a-chest-X-ray rejection, thread safety of ``Predictor.predict``, and refusal of tampered or
truncated model files (issue 4)."""
from __future__ import annotations

import io
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.helpers.support import require


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def document(h=1100, w=850) -> np.ndarray:
    """A typed page with a heading, body text and a table rule, as a scanned letter would look."""
    import cv2

    page = np.full((h, w), 255, np.uint8)
    cv2.putText(page, "RADIOLOGY REPORT", (60, 100), cv2.FONT_HERSHEY_DUPLEX, 1.5, 0, 3, cv2.LINE_AA)
    words = "the lungs are clear no focal consolidation heart size normal impression no acute findings".split()
    rng = np.random.default_rng(3)
    for k, y in enumerate(range(180, h - 80, 36)):
        cv2.putText(page, " ".join(rng.choice(words, 7)), (60, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2, cv2.LINE_AA)
        if k % 6 == 5:
            cv2.line(page, (50, y + 12), (w - 50, y + 12), 0, 1)
    return page


def skimage_image(name: str) -> np.ndarray:
    import skimage.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = getattr(skimage.data, name)()
    return img[..., :3] if img.ndim == 3 else img


NON_CXR = {
    "astronaut": lambda: jpeg(skimage_image("astronaut")),
    "chelsea_cat": lambda: jpeg(skimage_image("chelsea")),
    "coffee": lambda: jpeg(skimage_image("coffee")),
    "rocket": lambda: jpeg(skimage_image("rocket")),
    "camera_greyscale": lambda: png(skimage_image("camera")),
    "moon_greyscale": lambda: png(skimage_image("moon")),
    "coins_greyscale": lambda: png(skimage_image("coins")),
    "astronaut_greyscale": lambda: png(np.asarray(Image.fromarray(skimage_image("astronaut")).convert("L"))),
    "page_scan": lambda: png(skimage_image("page")),
    "document": lambda: png(document()),
    "uniform_noise": lambda: png(np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)),
    "gaussian_noise_rgb": lambda: png(np.clip(np.random.default_rng(1).normal(128, 50, (400, 400, 3)), 0, 255)
                                      .astype(np.uint8)),
    "flat_grey": lambda: png(np.full((512, 512), 128, np.uint8)),
    "flat_black": lambda: png(np.zeros((512, 512), np.uint8)),
    "nearly_flat": lambda: png((128 + np.random.default_rng(2).integers(0, 2, (512, 512))).astype(np.uint8)),
}


@pytest.fixture(scope="module")
def predictor(request):
    from pneumo_core.config import MODELS_DIR

    require((MODELS_DIR / "finetuned.keras").is_file(), "shipped model models/finetuned.keras not found")
    pred = request.getfixturevalue("shipped_predictor")
    require(pred.ood is not None, "the shipped model has no ood.npz (run calibrate-ood)")
    return pred


@pytest.fixture(scope="module")
def real_films(data_root):
    out = []
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((data_root / "test" / cls).glob("*.jpeg"))
        out += files[:: max(1, len(files) // 5)][:5]
    return out


@pytest.mark.parametrize("name", list(NON_CXR))
def test_non_chest_images_are_rejected(predictor, name):
    pred = predictor.predict(NON_CXR[name](), name=f"{name}.png")
    assert pred.error, f"{name} was scored: p={pred.p_pneumonia}, distance {pred.ood_distance}"
    assert pred.label is None and pred.p_pneumonia is None
    assert "chest x-ray" in pred.error.lower() or "blank" in pred.error.lower(), pred.error
    if "flat" not in name and "nearly" not in name:
        assert pred.is_chest_xray is False


def test_real_films_are_accepted(predictor, real_films):
    for path in real_films:
        pred = predictor.predict(path)
        assert pred.error is None, f"{path.name}: {pred.error}"
        assert pred.is_chest_xray and pred.ood_distance <= predictor.ood.threshold
        assert pred.label in ("NORMAL", "PNEUMONIA") and 0.0 <= pred.p_pneumonia <= 1.0


def test_blas_limit_is_restored_after_overlapping_calls():
    """Two sessions' distance computations overlap on a dashboard server; when both are done
    the process must be back on its own BLAS thread count, not stuck on one."""
    from threadpoolctl import threadpool_info

    from pneumo_core.inference import ood

    np.ones((64, 64)) @ np.ones((64, 64))  # make sure NumPy's BLAS is loaded and visible

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    require(bool(before) and max(before) >= 2,
            "BLAS runs one thread here (e.g. OPENBLAS_NUM_THREADS=1): there is no limit to restore")
    first, second = ood._one_blas_thread(), ood._one_blas_thread()
    first.__enter__()
    first_inside = True
    try:  # the two calls overlap (not nested), so no `with`; never leave the process on one thread
        second.__enter__()
        try:
            assert max(blas_threads()) == 1
            first.__exit__(None, None, None)
            first_inside = False
            assert max(blas_threads()) == 1, "the limit was lifted while a call was still inside"
        finally:
            second.__exit__(None, None, None)
    finally:
        if first_inside:
            first.__exit__(None, None, None)
    assert blas_threads() == before


def test_concurrent_predictions_match_sequential(predictor, real_films):
    files = list(real_films) + [None, None]  # plus two non-chest uploads in the mix
    payloads = [p.read_bytes() if p is not None else NON_CXR["astronaut"]() for p in files]

    def run(i):
        r = predictor.predict(payloads[i], name=f"f{i}", explain=(i % 3 == 0))
        return r.label, r.p_pneumonia, r.ood_distance, r.error

    sequential = [run(i) for i in range(len(payloads))]
    order = list(range(len(payloads))) * 3
    np.random.default_rng(0).shuffle(order)
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(run, order))
    for i, got in zip(order, concurrent):
        want = sequential[i]
        assert got[0] == want[0] and got[3] == want[3], (i, got, want)
        if want[1] is not None:
            assert abs(got[1] - want[1]) < 1e-4, (i, got, want)
        assert got[2] == pytest.approx(want[2], abs=0.02), (i, got, want)


# ---------------------------------------------------------------- tampered / truncated model files
@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    from pneumo_core.config import MODELS_DIR

    src = MODELS_DIR / "frozen.keras"
    require(src.is_file(), f"{src} not found")
    d = tmp_path_factory.mktemp("models")
    shutil.copy(src, d / "frozen.keras")
    return d / "frozen.keras"


def _with_manifest(model_copy, tmp_path):
    from pneumo_core.inference.model_files import write_manifest

    path = tmp_path / "frozen.keras"
    shutil.copy(model_copy, path)
    write_manifest(tmp_path)
    return path


def test_tampered_model_is_refused(model_copy, tmp_path):
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.model_files import load_model

    path = _with_manifest(model_copy, tmp_path)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"does not match the SHA-256 in MANIFEST\.json"):
        load_model(path)


def test_truncated_model_is_refused_by_the_manifest(model_copy, tmp_path):
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.predictor import Predictor

    path = _with_manifest(model_copy, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="changed or truncated") as info:
        Predictor(path, warm_up=False)
    assert "\n" not in str(info.value)


def test_truncated_model_without_manifest_fails_cleanly(model_copy, tmp_path):
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.model_files import load_model

    path = tmp_path / "frozen.keras"
    path.write_bytes(model_copy.read_bytes()[:100_000])
    with pytest.raises(ModelLoadError, match="frozen.keras is not listed in MANIFEST.json"):
        load_model(path)  # fails closed: nothing unlisted is opened
    with pytest.raises(ModelLoadError, match="frozen.keras is not a Keras model file.*truncated"):
        load_model(path, verify=False)


def test_not_a_model_and_missing_model(tmp_path):
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.model_files import load_model

    fake = tmp_path / "fake.keras"
    fake.write_text("<html>not a model</html>")
    with pytest.raises(ModelLoadError, match="fake.keras is not a Keras model file"):
        load_model(fake, verify=False)
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_model(tmp_path / "missing.keras")


@pytest.mark.slow
def test_recalibrated_detector_is_recorded_and_accepted(model_copy, tmp_path, data_root):
    """calibrate-ood on a model with a manifest: the new detector is recorded, so the next load
    accepts it (it used to be refused as tampered), and training.json carries its settings."""
    import json

    from pneumo_core.config import MODELS_DIR
    from pneumo_core.inference.model_files import write_manifest
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.training.trainer import TrainConfig, recalibrate_ood

    path = _with_manifest(model_copy, tmp_path)
    shutil.copytree(MODELS_DIR / "reports" / "frozen", tmp_path / "reports" / "frozen")
    write_manifest(tmp_path)  # now with the shipped detector listed
    before = Predictor(path, warm_up=False).ood.threshold
    info = recalibrate_ood(path, TrainConfig(data=str(data_root), limit=60))
    after = Predictor(path, warm_up=False)  # verifies model and detector against the manifest
    assert after.ood.threshold == pytest.approx(info["threshold"]) and info["threshold"] != pytest.approx(before)
    recorded = json.loads((tmp_path / "reports" / "frozen" / "training.json").read_text())["ood"]
    assert {k: recorded[k] for k in info} == info and "recalibrated_at" in recorded


def test_intact_copy_with_manifest_loads(model_copy, tmp_path):
    from pneumo_core.inference.model_files import load_model

    assert load_model(_with_manifest(model_copy, tmp_path)) is not None
