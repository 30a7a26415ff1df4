"""Model building for both variants, saving/loading, manifest checks."""
import json

import numpy as np
import pytest

from pneumo_core import config
from pneumo_core.inference import model_files as pneumo_model
from pneumo_core.training import builders


@pytest.fixture(scope="module")
def frozen_tiny():
    return builders.build_model("frozen", weights=None)


def test_frozen_variant_trains_only_the_head(frozen_tiny):
    base = frozen_tiny.get_layer(pneumo_model.BASE_NAME)
    assert not base.trainable
    names = {w.path.split("/")[0] for w in frozen_tiny.trainable_weights}
    assert names == {"logit"}
    assert frozen_tiny.output_shape == (None, 1)


def test_finetuned_variant_unfreezes_top_30_except_batchnorm(tiny_model):
    import keras

    base = tiny_model.get_layer(pneumo_model.BASE_NAME)
    trainable = [layer for layer in base.layers if layer.trainable and layer.weights]
    assert trainable, "nothing unfrozen"
    top = base.layers[-config.FINE_TUNE_LAYERS:]
    for layer in base.layers:
        if layer.trainable and layer.weights:
            assert layer in top, f"{layer.name} is below the top {config.FINE_TUNE_LAYERS} layers"
            assert not isinstance(layer, keras.layers.BatchNormalization)
    assert any(isinstance(layer, keras.layers.Conv2D) and layer.trainable for layer in top)
    assert tiny_model.get_layer("head_bn") is not None


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        builders.build_model("huge", weights=None)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone weights file not found"):
        builders.build_backbone(str(tmp_path / "nope.weights.h5"))


def test_local_imagenet_weights_load(local_weights, test_normal):
    """The offline file is really loaded: kernels equal the file's (read with h5py and with
    Keras' own loader), and a real X-ray gives O(1) features, not a random init's ~1e-11."""
    import h5py
    import keras

    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.preprocess import model_input

    base = builders.build_backbone(local_weights)
    with h5py.File(local_weights, "r") as f:  # Keras 3 layout: layers/<class counter>/vars/<i>
        np.testing.assert_array_equal(base.get_layer("Conv1").kernel.numpy(), f["layers/conv2d/vars/0"][()])
        np.testing.assert_array_equal(base.get_layer("Conv_1").kernel.numpy(), f["layers/conv2d_34/vars/0"][()])
    reference = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=None)
    reference.load_weights(local_weights)
    assert len(base.weights) == len(reference.weights)
    for ours, theirs in zip(base.weights, reference.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    pooled = base(model_input(load_path(test_normal))[None], training=False).numpy().mean(axis=(1, 2))[0]
    assert pooled.shape == (1280,) and pooled.mean() > 0.05 and (pooled > 1e-3).mean() > 0.2, \
        "ImageNet features on a real film should be O(1) and not mostly zero"


def test_split_model_reproduces_the_logit(tiny_model):
    import tensorflow as tf

    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    backbone, head = pneumo_model.split_model(tiny_model)
    logit = head(backbone(x, training=False), training=False)
    assert np.allclose(tf.sigmoid(logit).numpy(), tiny_model(x, training=False).numpy(), atol=1e-5)


def test_save_load_roundtrip_with_manifest(tmp_path, frozen_tiny):
    path = tmp_path / "frozen.keras"
    frozen_tiny.save(path)
    pneumo_model.write_manifest(tmp_path)
    manifest = json.loads((tmp_path / pneumo_model.MANIFEST).read_text())
    assert manifest["models"]["frozen.keras"]["sha256"] == pneumo_model.sha256_file(path)
    loaded = pneumo_model.load_model(path)
    x = np.zeros((1, 224, 224, 3), "float32")
    assert np.allclose(loaded(x).numpy(), frozen_tiny(x).numpy(), atol=1e-6)
    # tampering is detected before Keras sees the file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pneumo_model.ModelLoadError, match="does not match the SHA-256"):
        pneumo_model.load_model(path)


def test_shipped_models_match_manifest():
    from pneumo_core.config import MODELS_DIR

    manifest = json.loads((MODELS_DIR / pneumo_model.MANIFEST).read_text())
    assert set(manifest["models"]) == {"finetuned.keras", "frozen.keras", "finetuned.tflite", "frozen.tflite"}
    assert set(manifest["ood_detectors"]) == {"reports/finetuned/ood.npz", "reports/frozen/ood.npz",
                                              "reports/finetuned/shift_reference.npz",
                                              "reports/frozen/shift_reference.npz"}
    for name, entry in [*manifest["models"].items(), *manifest["ood_detectors"].items()]:
        assert pneumo_model.sha256_file(MODELS_DIR / name) == entry["sha256"], name


@pytest.mark.slow
def test_ensemble_averages_member_logits_loads_safely_and_explains(tmp_path, test_normal):
    """Two different lively classifiers (O(1) features on a real film): the ensemble's p is the
    sigmoid of the mean of their logits, it survives a safe-mode round trip, and its Grad-CAM is
    the real map: ReLU of the mean of the members' un-rectified Grad-CAM sums."""
    import tensorflow as tf

    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.gradcam import gradcam
    from pneumo_core.inference.model_files import load_model, member_feature_dim, split_model, write_manifest
    from pneumo_core.inference.preprocess import model_input
    from pneumo_core.training.builders import build_ensemble
    from tests.helpers.tiny_models import lively_model

    members = [lively_model("finetuned", seed=s) for s in (3, 4)]
    rng = np.random.default_rng(0)
    for m in members:  # non-trivial BatchNorm statistics, so folding the head into one Dense is really tested
        gamma, beta, mean, var = m.get_layer("head_bn").get_weights()
        m.get_layer("head_bn").set_weights([rng.uniform(0.5, 2, gamma.shape).astype("float32"),
                                            rng.normal(0, 0.5, beta.shape).astype("float32"),
                                            rng.normal(0, 0.5, mean.shape).astype("float32"),
                                            rng.uniform(0.5, 2, var.shape).astype("float32")])
    x = model_input(load_path(test_normal))[None]
    logits, pre_cams = [], []
    for m in members:  # logits and un-rectified Grad-CAM straight from each member
        backbone, head = split_model(m)
        fmap = backbone(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(fmap)
            logit = head(fmap, training=False)
        grads = tape.gradient(logit, fmap)
        assert float(tf.reduce_mean(fmap)) > 0.05, "member features near 0: the test would check only biases"
        logits.append(float(logit[0, 0]))
        pre_cams.append(tf.reduce_sum(tf.reduce_mean(grads, axis=(1, 2), keepdims=True) * fmap, axis=-1).numpy()[0])
    assert abs(logits[0] - logits[1]) > 0.5, "the members must disagree for this test to mean anything"
    want = 1 / (1 + np.exp(-np.mean(logits)))
    ens = build_ensemble(members)
    assert ens.predict(x, verbose=0).ravel()[0] == pytest.approx(want, rel=1e-4)
    path = tmp_path / "ensemble.keras"
    ens.save(path)
    write_manifest(tmp_path)
    loaded = load_model(path)  # safe_mode: no Lambda layers, nothing to unpickle
    assert loaded.predict(x, verbose=0).ravel()[0] == pytest.approx(want, rel=1e-4)
    backbone, head = split_model(loaded)
    assert backbone.output.shape[-1] == 2560 and member_feature_dim(loaded) == 1280
    cam = gradcam(loaded, x)[0]
    want_cam = np.maximum(np.mean(pre_cams, axis=0), 0)
    assert cam.shape == (7, 7) and want_cam.std() > 0 and cam.std() > 0, "an empty map checks nothing"
    np.testing.assert_allclose(cam, want_cam, rtol=1e-3, atol=1e-4 * float(want_cam.max()))
    with pytest.raises(ValueError, match="share the backbone"):
        build_ensemble([members[0], loaded])


@pytest.mark.parametrize("first_changed, trunk_end", [
    ("block_14_expand", "block_13_project_BN"),  # what fine-tuning the top 30 layers changes
    ("block_15_expand", "block_14_add"),  # mid-network: the cut must be after the residual add
])
@pytest.mark.slow
def test_ensemble_computes_the_layers_its_runs_share_once(first_changed, trunk_end):
    """Runs that differ only above some layer: the ensemble runs the identical layers once (a
    ``shared_trunk`` ending at the last tensor every later layer flows through) and a top per
    run, is smaller than separate backbones, and still gives the sigmoid of the mean logit."""
    from tests.helpers.tiny_models import lively_model, random_inputs

    runs = [lively_model("finetuned", seed=5) for _ in range(3)]
    rng = np.random.default_rng(1)
    for run in runs[1:]:
        base = run.get_layer(pneumo_model.BASE_NAME)
        start = [layer.name for layer in base.layers].index(first_changed)
        for layer in base.layers[start:]:
            layer.set_weights([w * rng.uniform(0.9, 1.1, w.shape).astype(w.dtype) for w in layer.get_weights()])
    backbones = [run.get_layer(pneumo_model.BASE_NAME) for run in runs]
    assert backbones[0].layers[builders.shared_trunk_depth(backbones)].name == trunk_end

    x = random_inputs(4)
    # logits straight from each run's logit layer: a saturated float32 p cannot be inverted
    logits = []
    for run in runs:
        backbone, head = pneumo_model.split_model(run)
        logits.append(head(backbone(x, training=False), training=False).numpy().ravel().astype("float64"))
    assert np.ptp(np.array(logits), axis=0).max() > 1e-3, "the runs must disagree for this test to mean anything"
    want = 1 / (1 + np.exp(-np.mean(logits, axis=0)))

    ens = builders.build_ensemble(runs)
    inner = {layer.name for layer in ens.get_layer(pneumo_model.BASE_NAME).layers}
    assert {"shared_trunk", "member0_top", "member1_top", "member2_top"} <= inner
    assert ens.get_layer(pneumo_model.BASE_NAME).get_layer("shared_trunk").layers[-1].name == trunk_end
    np.testing.assert_allclose(ens.predict(x, verbose=0).ravel(), want, rtol=1e-4)
    assert pneumo_model.member_feature_dim(ens) == 1280 and [p.name for p in pneumo_model.ensemble_parts(ens)] == \
        ["member0_top", "member1_top", "member2_top"]
    # one trunk instead of three; the rest is three tops and one Dense over 3 x 1280 features
    trunk = ens.get_layer(pneumo_model.BASE_NAME).get_layer("shared_trunk").count_params()
    assert trunk > 0.25 * backbones[0].count_params()
    assert ens.count_params() == 3 * backbones[0].count_params() - 2 * trunk + 3 * 1280 + 1


def test_first_line_of_an_error_is_safe_on_empty_and_multiline_messages():
    from pneumo_core.errors import first_line

    assert first_line(ValueError("")) == "ValueError"
    assert first_line(OSError("\n  \n")) == "OSError"
    assert first_line(RuntimeError("\n  bad header\ndetails")) == "bad header"
    assert first_line(RuntimeError("x" * 500), limit=10) == "x" * 10


def test_a_load_failure_with_an_empty_message_is_one_clear_line(tmp_path, frozen_tiny, monkeypatch):
    import keras

    frozen_tiny.save(tmp_path / "tiny.keras")
    pneumo_model.write_manifest(tmp_path)

    def refuse(*args, **kwargs):
        raise ValueError("")

    monkeypatch.setattr(keras.models, "load_model", refuse)
    with pytest.raises(pneumo_model.ModelLoadError, match=r"^could not load model tiny.keras: ValueError$"):
        pneumo_model.load_model(tmp_path / "tiny.keras")
