"""Dataset listing, patient grouping and the tf.data pipeline on real and odd images."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pneumo_core.datasets import listing
from pneumo_core.training import data as dataset


@pytest.mark.parametrize("name, expected", [
    ("person123_bacteria_586.jpeg", "PERSON123"),
    ("person1_virus_6.jpeg", "PERSON1"),
    ("IM-0123-0001.jpeg", "IM-0123"),
    ("IM-0123-0001-0002.jpeg", "IM-0123"),
    ("NORMAL2-IM-0123-0001.jpeg", "NORMAL2-IM-0123"),
    ("scan.png", "scan"),
])
def test_patient_id(name, expected):
    assert listing.patient_id(name) == expected


def test_normal2_and_im_prefix_are_different_patients():
    assert listing.patient_id("NORMAL2-IM-0123-0001.jpeg") != listing.patient_id("IM-0123-0001.jpeg")


def test_list_images_ignores_non_images(tmp_path):
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / cls).mkdir()
        Image.new("L", (80, 80), 128).save(tmp_path / cls / f"{cls}-IM-0001-0001.png")
        (tmp_path / cls / ".DS_Store").write_bytes(b"\0\0")
        (tmp_path / cls / "notes.txt").write_text("hello")
    df = listing.list_images(tmp_path)
    assert list(df.label) == [0, 1]
    assert all(df.file.str.endswith(".png"))


def test_resolve_split_dir(tmp_path):
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "test" / cls).mkdir(parents=True)
    assert listing.resolve_split_dir(tmp_path) == tmp_path / "test"
    assert listing.resolve_split_dir(tmp_path / "test") == tmp_path / "test"
    with pytest.raises(FileNotFoundError, match="neither a split folder"):
        listing.resolve_split_dir(tmp_path / "test" / "NORMAL")


def test_real_train_split_is_grouped_by_patient_and_stratified(data_root):
    df = listing.list_images(data_root / "train")
    assert len(df) == 5216 and df.label.sum() == 3875
    train, val = listing.patient_split(df, 0.15, seed=42)
    assert not set(train.patient) & set(val.patient), "a patient is on both sides"
    assert len(train) + len(val) == len(df)
    assert 0.12 < len(val) / len(df) < 0.18
    # stratified: the class balance of validation is close to the whole set's
    assert abs(val.label.mean() - df.label.mean()) < 0.03
    # seeded: the same seed gives the same split, another seed a different one
    again = listing.patient_split(df, 0.15, seed=42)[1]
    other = listing.patient_split(df, 0.15, seed=7)[1]
    assert list(again.file) == list(val.file)
    assert list(other.file) != list(val.file)
    # patients with several films exist, so grouping matters
    assert df.patient.value_counts().max() > 1


def test_class_weights_balance_the_loss():
    w = dataset.class_weights([0] * 10 + [1] * 30)
    assert w[0] == pytest.approx(2.0) and w[1] == pytest.approx(2 / 3)
    assert 10 * w[0] == pytest.approx(30 * w[1])


def _odd_images(tmp_path):
    rng = np.random.default_rng(0)
    specs = {
        "grey_portrait.png": Image.fromarray(rng.integers(0, 255, (500, 300), dtype=np.uint8), "L"),
        "rgb_landscape.jpeg": Image.fromarray(rng.integers(0, 255, (120, 400, 3), dtype=np.uint8), "RGB"),
        "tiny_square.bmp": Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), "L"),
    }
    rows = []
    for i, (name, img) in enumerate(specs.items()):
        path = tmp_path / name
        img.save(path)
        rows.append({"path": str(path), "file": name, "label": i % 2, "patient": name})
    return pd.DataFrame(rows)


def test_pipeline_handles_odd_sizes_and_modes(tmp_path):
    df = _odd_images(tmp_path)
    batches = list(dataset.make_dataset(df, batch_size=2))
    x = np.concatenate([b[0].numpy() for b in batches])
    y = np.concatenate([b[1].numpy() for b in batches])
    assert x.shape == (3, 224, 224, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert list(y) == [0, 1, 0]
    # a greyscale image becomes three identical channels
    assert np.allclose(x[0, ..., 0], x[0, ..., 1])


def test_pipeline_matches_single_image_preprocessing(test_normal):
    """Training (tf.data, TensorFlow's JPEG decoder) and inference (Pillow, then tf_model_input)
    see the same tensor up to the decoders' rounding (a few grey levels at most)."""
    df = pd.DataFrame([{"path": str(test_normal), "file": test_normal.name, "label": 0, "patient": "p"}])
    x_ds = next(iter(dataset.make_dataset(df, batch_size=1, with_labels=False))).numpy()[0]
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.preprocess import tf_model_input

    x_inf = tf_model_input(load_path(test_normal).rgb()).numpy()
    assert np.abs(x_ds - x_inf).max() < 0.03
    assert np.abs(x_ds - x_inf).mean() < 0.005


def test_augmentation_changes_images_but_keeps_shape_and_range(test_normal):
    df = pd.DataFrame([{"path": str(test_normal), "file": "a", "label": 0, "patient": "p"}] * 4)
    clean = next(iter(dataset.make_dataset(df, batch_size=4)))[0].numpy()
    aug_ds = dataset.make_dataset(df, batch_size=4, augment=dataset.Augment(), seed=1)
    epoch1 = next(iter(aug_ds))[0].numpy()
    epoch2 = next(iter(aug_ds))[0].numpy()
    assert epoch1.shape == clean.shape
    assert epoch1.min() >= -1.0 and epoch1.max() <= 1.0
    assert np.abs(epoch1 - clean).mean() > 0.01, "augmentation did nothing"
    assert np.abs(epoch1[0] - epoch1[1]).mean() > 0.01, "every copy got the same augmentation"
    assert np.abs(epoch1 - epoch2).mean() > 0.01, "each epoch must draw new augmentations"


def test_jpeg_augmentation_adds_block_artefacts_only_when_enabled(test_normal):
    """jpeg=1: every film re-encoded (8x8 block edges appear); jpeg=0: none. The photometric
    part is otherwise identical for the same seed, so any difference is the re-encoding."""
    import tensorflow as tf

    img = tf.cast(dataset.decode_file(str(test_normal)), tf.float32)
    seed = tf.constant([3, 4], tf.int64)
    no_jpeg = dataset.Augment(jpeg=0.0).photometric(img, seed).numpy()
    jpeg = dataset.Augment(jpeg=1.0).photometric(img, seed).numpy()
    assert jpeg.shape == no_jpeg.shape and 0.0 <= jpeg.min() and jpeg.max() <= 255.0
    assert np.abs(jpeg - no_jpeg).mean() > 0.5, "jpeg=1 must re-encode the film"
    again = dataset.Augment(jpeg=1.0).photometric(img, seed).numpy()
    np.testing.assert_array_equal(jpeg, again)  # stateless: same seed, same quality

    def blockiness(x):  # mean jump across 8-px block borders minus the jump inside blocks
        d = np.abs(np.diff(x[..., 0], axis=1))
        return d[:, 7::8].mean() - d[:, 3::8].mean()

    assert blockiness(jpeg) > blockiness(no_jpeg)


def test_random_resized_crop_reframes_the_film_only_when_enabled(test_normal):
    """crop/aspect > 0: a window of the film, resized back to the full size, so the film is
    reframed, differently per seed; crop =
    aspect = 0 (the default) leaves the photometric output exactly as it was, so runs trained
    before the option existed are reproduced bit for bit."""
    import tensorflow as tf

    img = tf.cast(dataset.decode_file(str(test_normal)), tf.float32)
    quiet = dict(jpeg=0.0, gamma=0.0, contrast=0.0, brightness=0.0)
    seed = tf.constant([5, 6], tf.int64)
    plain = dataset.Augment(**quiet).photometric(img, seed).numpy()
    np.testing.assert_allclose(plain, img.numpy(), atol=0.01)  # nothing else moves the pixels
    crops = [dataset.Augment(**quiet, crop=0.3, aspect=0.2).photometric(img, tf.constant([5, s], tf.int64)).numpy()
             for s in range(6)]
    assert all(c.shape == plain.shape for c in crops)
    assert all(np.abs(c - plain).mean() > 2.0 for c in crops), "a crop must reframe the film"
    assert np.abs(crops[0] - crops[1]).mean() > 1.0, "different seeds must draw different windows"
    np.testing.assert_array_equal(
        crops[0],
        dataset.Augment(**quiet, crop=0.3, aspect=0.2).photometric(img, tf.constant([5, 0], tf.int64)).numpy())
    # The default stream is the one from before the option existed: golden values computed with
    # that implementation (commit 9489f12^) on a synthetic film and seed.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:224, 0:224]
    film = (np.stack([(x + y) % 256] * 3, -1) * 0.9 + rng.uniform(0, 20, (224, 224, 3))).astype(np.float32)
    default = dataset.Augment().photometric(tf.constant(film), seed).numpy()
    assert float(default.mean()) == pytest.approx(113.30761, abs=1e-3)
    assert float(default.std()) == pytest.approx(60.56596, abs=1e-3)
    np.testing.assert_allclose([default[10, 20, 0], default[100, 150, 1], default[200, 30, 2]],
                               [39.363647, 221.67244, 199.05235], atol=1e-3)
