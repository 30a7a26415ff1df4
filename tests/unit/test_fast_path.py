"""The fast inference path gives the reference path's numbers: preprocessing, compiled forward,
compiled Grad-CAM, batched OOD distances, and the bounded-window batch decoder."""
import numpy as np
import pytest

from pneumo_core.imaging.decode import LoadedImage, load_path
from pneumo_core.inference import gradcam as explain
from pneumo_core.inference.ood import MahalanobisOOD
from pneumo_core.inference.predictor import Predictor
from pneumo_core.inference.preprocess import model_input, pixel_std, tf_model_input
from tests.helpers.tiny_models import lively_model, random_inputs


@pytest.fixture(scope="module")
def tiny_predictor():
    return Predictor(keras_model=lively_model("finetuned"))


@pytest.mark.parametrize("shape", [(224, 224), (224, 224, 3), (224, 224, 1), (1700, 2000), (2000, 1700, 3),
                                   (300, 250), (100, 150, 3), (224, 300)])
def test_fast_preprocessing_equals_reference(shape):
    px = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    grey = px if px.ndim == 2 else (px[..., 0] if px.shape[2] == 1 else None)
    rgb = np.repeat(grey[..., None], 3, axis=2) if grey is not None else px
    ref = tf_model_input(rgb).numpy()
    fast = model_input(px)
    assert fast.shape == (224, 224, 3) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-6)
    assert pixel_std(px) == pytest.approx(float(px.std()), rel=1e-9, abs=1e-9)


def test_model_input_equals_reference_on_real_films(test_normal, test_pneumonia):
    for path in (test_normal, test_pneumonia):
        loaded = load_path(path)
        np.testing.assert_array_equal(model_input(loaded), tf_model_input(loaded.rgb()).numpy())


def test_model_input_still_refuses_blank_images():
    from pneumo_core.errors import ImageError

    flat = LoadedImage(np.full((300, 300), 128, np.uint8), "PNG", (300, 300))
    with pytest.raises(ImageError, match="blank"):
        model_input(flat)
    with pytest.raises(ImageError, match="blank"):
        model_input(flat.pixels)


def test_compiled_forward_equals_model_call(tiny_predictor):
    x = random_inputs(3)
    p, pooled = tiny_predictor.predict_arrays(x)
    ref = tiny_predictor.model(x, training=False).numpy()[:, 0]
    assert ref.std() > 1e-3, "test model is degenerate"
    # float32 round-off only: graph and eager execution fuse and order the ops differently
    np.testing.assert_allclose(p, ref, rtol=0, atol=2e-4)
    base = tiny_predictor.model.get_layer("mobilenetv2_base")
    np.testing.assert_allclose(pooled, base(x, training=False).numpy().mean(axis=(1, 2)), rtol=1e-3, atol=1e-3)


def test_compiled_gradcam_equals_reference(tiny_predictor):
    x = random_inputs(2, seed=3)
    p, cam, _ = tiny_predictor.explain_arrays(x)
    ref = explain.gradcam(tiny_predictor.model, x)
    assert cam.shape == ref.shape == (2, 7, 7)
    assert ref.max() > 0, "test model is degenerate"
    np.testing.assert_allclose(cam, ref, rtol=1e-3, atol=1e-3 * float(ref.max()))
    np.testing.assert_allclose(p, tiny_predictor.predict_arrays(x)[0], rtol=1e-6, atol=1e-7)


def test_ood_distance_matches_three_operand_einsum():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 40)).astype(np.float32)
    precision = (a.T @ a / 50 + np.eye(40)).astype(np.float32)
    det = MahalanobisOOD(rng.normal(size=40).astype(np.float32), precision, 10.0, 0.01)
    f = rng.normal(size=(7, 40)).astype(np.float32)
    d = f - det.mean
    ref = np.sqrt(np.einsum("ij,jk,ik->i", d, precision, d))
    np.testing.assert_allclose(det.distance(f), ref, rtol=1e-5)
    np.testing.assert_allclose(det.distance(f[2]), ref[2:3], rtol=1e-5)


def test_predict_files_keeps_order_and_errors_and_matches_single_image_path(tiny_predictor, data_root, tmp_path):
    films = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:4] + \
        sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:5]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    paths = films[:3] + [bad] + films[3:]
    # batch 2 and one worker: a decode window of 5, smaller than the 10 files
    results = tiny_predictor.predict_files(paths, batch_size=2, workers=1)
    assert [r.file for r in results] == [str(p) for p in paths]
    assert results[3].error and results[3].label is None
    for path, r in zip(paths, results):
        if path == bad:
            continue
        single = tiny_predictor.predict(path)
        assert r.error is None and r.label == single.label
        # batched and single calls take different oneDNN/XLA kernels: float32 sums in another order
        # differ by ~1e-5 on some CPUs (seen 1.2e-5 in CI), far below any threshold's resolution
        assert r.p_pneumonia == pytest.approx(single.p_pneumonia, abs=1e-4)


def test_single_image_path_uses_the_compiled_graphs_only(tiny_predictor, test_pneumonia, monkeypatch):
    """No Keras ``model.predict`` per image, and no re-tracing for new images or batch sizes."""
    def refuse(*args, **kwargs):
        raise AssertionError("model.predict called on the inference path")

    monkeypatch.setattr(tiny_predictor.model, "predict", refuse)
    backend = tiny_predictor.backend  # the Keras backend's two compiled graphs
    traces = (backend._forward.experimental_get_tracing_count(), backend._explain.experimental_get_tracing_count())
    data = test_pneumonia.read_bytes()
    for _ in range(2):
        assert tiny_predictor.predict(data).error is None
        assert tiny_predictor.predict(data, explain=True).heatmap is not None
    tiny_predictor.predict_files([test_pneumonia] * 3, batch_size=2)
    assert (backend._forward.experimental_get_tracing_count(),
            backend._explain.experimental_get_tracing_count()) == traces


@pytest.mark.parametrize("size", [(224, 224), (1700, 2000), (333, 517), (64, 90), (7, 7)])
def test_heatmap_upsampling_equals_opencv_cubic(size):
    import cv2

    cam = np.random.default_rng(size[0]).random((7, 7)).astype(np.float32) * 3.0
    ref = np.clip(cv2.resize(cam / cam.max(), (size[1], size[0]), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    heat = explain.normalise_heatmap(cam, size)
    assert heat.shape == size and heat.dtype == np.float32
    np.testing.assert_allclose(heat, ref, rtol=0, atol=1e-5)
    assert explain.normalise_heatmap(np.zeros((7, 7)), size).max() == 0.0


def test_greyscale_rgb_copy_equals_repeat():
    px = np.random.default_rng(4).integers(0, 256, (301, 257), dtype=np.uint8)
    rgb = LoadedImage(px, "PNG", px.shape).rgb()
    np.testing.assert_array_equal(rgb, np.repeat(px[..., None], 3, axis=2))
    assert rgb.flags.writeable


def test_grey_to_rgb_is_one_rule_for_every_dtype(test_normal):
    from pneumo_core.imaging.core import grey_to_rgb

    pixels = load_path(test_normal).pixels  # the test films are stored as RGB JPEGs with equal channels
    grey = np.ascontiguousarray(pixels[..., 0] if pixels.ndim == 3 else pixels)
    assert grey.dtype == np.uint8 and grey.std() > 10
    for px in (grey, grey.astype(np.float32) / 127.5 - 1, grey.astype(np.uint16) * 257, grey[..., None]):
        rgb = grey_to_rgb(px)
        flat = px[..., 0] if px.ndim == 3 else px
        assert rgb.dtype == px.dtype and rgb.shape == (*flat.shape, 3)
        np.testing.assert_array_equal(rgb, np.repeat(flat[..., None], 3, axis=2))
    colour = np.dstack([grey, grey // 2, grey // 3])
    assert grey_to_rgb(colour) is colour


def test_predictor_labels_by_the_shared_rule(tiny_predictor):
    from pneumo_core.config import label_at

    t = tiny_predictor.threshold
    for p in (0.0, t - 1e-9, t, t + 1e-9, 1.0):
        assert tiny_predictor.label_for(p) == label_at(p, t) == ("PNEUMONIA" if p >= t else "NORMAL")
