"""Grad-CAM on the shipped model: shape, range, and the Adebayo et al. randomisation check."""
import numpy as np
import pytest

from pneumo_core.imaging.decode import load_path
from pneumo_core.inference import gradcam as explain
from pneumo_core.inference.preprocess import model_input


@pytest.fixture(scope="module")
def xray(test_pneumonia):
    loaded = load_path(test_pneumonia)
    return loaded, model_input(loaded)[None]


def test_heatmap_is_image_sized_finite_in_range_and_not_constant(shipped_predictor, test_pneumonia):
    pred = shipped_predictor.predict(test_pneumonia, explain=True)
    assert pred.error is None
    h = pred.heatmap
    assert h.shape == pred.image.shape[:2]
    assert np.isfinite(h).all()
    assert h.min() >= 0.0 and h.max() <= 1.0
    assert h.std() > 0.05, "heatmap is (nearly) constant"
    assert h.max() == pytest.approx(1.0, abs=0.05)


def test_compiled_gradcam_equals_reference(shipped_keras_predictor, xray):
    _, x = xray
    _, cam_fast, _ = shipped_keras_predictor.explain_arrays(x)
    cam_ref = explain.gradcam(shipped_keras_predictor.model, x)
    assert np.allclose(cam_fast, cam_ref, rtol=1e-3, atol=1e-5 * max(1.0, float(cam_ref.max())))


@pytest.fixture(scope="module")
def several(data_root):
    files = sorted((data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:3] + sorted(
        (data_root / "test" / "NORMAL").glob("*.jpeg"))[:2]
    return np.stack([model_input(load_path(f)) for f in files])


def _mean_corr(a, b):
    """Mean per-image correlation; a constant map has none and must not count as "decorrelated"."""
    for maps in (a, b):
        assert (maps.reshape(len(maps), -1).std(axis=1) > 0).all(), "a constant (e.g. all-zero) map checks nothing"
    return float(np.mean([np.corrcoef(u.ravel(), v.ravel())[0, 1] for u, v in zip(a, b)]))


@pytest.mark.slow
def test_heatmap_changes_when_weights_are_randomised(shipped_keras_predictor, several):
    """Model-parameter randomisation test (Adebayo et al. 2018): an explanation that survives
    randomising the weights explains the image, not the model. Cascading: re-initialise the
    layers training changed (top 30 of the base and the head) and the map must decorrelate;
    randomising everything must change it too. The random model is a lively one (O(1) maps):
    a plain random init gives all-zero maps, which would pass any decorrelation bound."""
    from pneumo_core.config import FINE_TUNE_LAYERS
    from pneumo_core.inference.model_files import BASE_NAME, ensemble_parts, load_model
    from tests.helpers.tiny_models import lively_model

    trained = explain.gradcam(shipped_keras_predictor.model, several)
    fresh = lively_model("finetuned", seed=123)
    full_random = explain.gradcam(fresh, several)
    for maps in (trained, full_random):
        assert (maps.max(axis=(1, 2)) > 1e-3 * trained.max()).all(), "a map is (nearly) all zero"

    # a second copy of the shipped model; in an ensemble every member's trained layers are reset
    cascade = load_model(shipped_keras_predictor.path)
    trained_layers = {layer.name: layer for layer in fresh.get_layer(BASE_NAME).layers[-FINE_TUNE_LAYERS:]}
    reset = 0
    for part in ensemble_parts(cascade) or [cascade.get_layer(BASE_NAME)]:
        for dst in part.layers:
            if dst.name in trained_layers and dst.weights:
                dst.set_weights(trained_layers[dst.name].get_weights())
                reset += 1
    assert reset >= len(ensemble_parts(cascade) or [None]) * 20, "the fine-tuned layers were not found"
    rng = np.random.default_rng(0)
    for name in ("head_bn", "logit"):
        if name not in [layer.name for layer in cascade.layers]:
            continue  # an ensemble's head is one Dense over all members' features
        dst, src = cascade.get_layer(name), fresh.get_layer(name)
        same = [a.shape for a in dst.get_weights()] == [a.shape for a in src.get_weights()]
        dst.set_weights(src.get_weights() if same else
                        [rng.normal(0, 0.05, a.shape).astype(a.dtype) for a in dst.get_weights()])
    cascaded = explain.gradcam(cascade, several)
    assert (cascaded.max(axis=(1, 2)) > 0).all(), "the cascaded model's map is all zero"

    assert _mean_corr(trained, cascaded) < 0.3
    assert _mean_corr(trained, full_random) < 0.5
    # and the trained model's maps are image-specific, not one fixed pattern
    assert _mean_corr(trained[:1].repeat(len(trained) - 1, 0), trained[1:]) < 0.9


def test_overlay_blends_with_opacity(xray):
    loaded, _ = xray
    img = loaded.rgb()
    heat = np.zeros(img.shape[:2], np.float32)
    heat[: img.shape[0] // 2] = 1.0
    none = explain.overlay(img, heat, alpha=0.0)
    half = explain.overlay(img, heat, alpha=0.5)
    assert none.shape == img.shape and none.dtype == np.uint8
    assert np.abs(none.astype(int) - img.astype(int)).max() <= 1
    assert np.abs(half.astype(int) - img.astype(int)).mean() > 5
    # greyscale input and a heatmap of another size are accepted
    small = explain.overlay(img[..., 0], np.ones((7, 7), np.float32), alpha=0.3)
    assert small.shape == img.shape


def test_colour_scale_runs_low_to_high_like_the_overlay():
    """The scale shown beside a heatmap must use the overlay's colours in the stated direction:
    a heatmap of 0 looks like its low end, a heatmap of 1 like its high end."""
    from pneumo_core.inference.gradcam import colour_scale, overlay

    bar = colour_scale(64, thickness=4)
    up = colour_scale(64, thickness=4, vertical=True)
    assert bar.shape == (4, 64, 3) and up.shape == (64, 4, 3)
    grey = np.zeros((8, 8, 3), np.uint8)
    low = overlay(grey, np.zeros((8, 8)), alpha=1.0)[0, 0]
    high = overlay(grey, np.ones((8, 8)), alpha=1.0)[0, 0]
    np.testing.assert_array_equal(bar[0, 0], low)
    np.testing.assert_array_equal(bar[0, -1], high)
    np.testing.assert_array_equal(up[-1, 0], low)
    np.testing.assert_array_equal(up[0, 0], high)
