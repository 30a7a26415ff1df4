"""The site-adaptation study's pieces (issue 22): class-balanced weights, anchored AdaBN on a small lively
MobileNetV2 and real training films, CORAL, EM on the shipped model's real validation scores, the
patient-grouped cross-fitting and the shipping rule. Training films only: the test split is the study's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumo_core.adaptation.batchnorm import Moments, anchored_statistics, class_balanced_weights, weighted_moments
from pneumo_core.adaptation.coral import align_blocks, feature_moments, fit_blocks
from pneumo_core.adaptation.study import Shift, cross_fit, patient_halves, study_report
from pneumo_core.config import MODELS_DIR, data_dir
from tests.helpers.support import require


# ---------------------------------------------------------------- numpy parts
def test_class_balanced_weights_give_each_class_half():
    w = class_balanced_weights([1, 1, 1, 0])
    assert w.sum() == pytest.approx(1.0)
    assert w[3] == pytest.approx(0.5) and w[:3] == pytest.approx([1 / 6] * 3)
    assert class_balanced_weights([1, 1]) == pytest.approx([0.5, 0.5])  # one class: equal weights


def test_weighted_moments_match_numpy_over_films():
    rng = np.random.default_rng(0)
    means, squares = rng.normal(size=(6, 3)), rng.uniform(2, 3, size=(6, 3))
    w = np.array([1, 1, 2, 2, 0, 4.0])
    got = weighted_moments(([means], [squares]), w)
    mean = np.average(means, axis=0, weights=w)
    assert got.mean[0] == pytest.approx(mean)
    assert got.var[0] == pytest.approx(np.average(squares, axis=0, weights=w) - mean**2)


def test_anchored_statistics_keep_the_model_when_the_site_looks_like_training_and_normalise_like_it_otherwise():
    rng = np.random.default_rng(1)
    original = Moments([rng.normal(size=4)], [rng.uniform(0.5, 2, size=4)])
    source = Moments([rng.normal(size=4)], [rng.uniform(0.5, 2, size=4)])
    same = anchored_statistics(original, source, source, [1e-3])
    assert same.mean[0] == pytest.approx(original.mean[0]) and same.var[0] == pytest.approx(original.var[0])
    site = Moments([source.mean[0] + 3.0], [source.var[0] * 4.0])  # shifted and twice as spread
    new = anchored_statistics(original, source, site, [1e-3])
    normalised = lambda mu, var, st: ((mu - st.mean[0]) / np.sqrt(st.var[0] + 1e-3),  # noqa: E731
                                      np.sqrt(var / (st.var[0] + 1e-3)))
    expected = normalised(source.mean[0], source.var[0], original)
    for got, want in zip(normalised(site.mean[0], site.var[0], new), expected):
        assert got == pytest.approx(want)
    dead = anchored_statistics(original, Moments([np.zeros(4)], [np.zeros(4)]), site, [1e-3])
    assert dead.mean[0] == pytest.approx(original.mean[0])  # no spread in training: left as it was


def test_coral_gives_the_site_the_source_moments_block_by_block():
    rng = np.random.default_rng(2)
    source = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    site = source @ np.diag([2.0, 0.5, 1, 1, 3, 1]) + 5.0  # each block rescaled and shifted
    maps = fit_blocks(source, np.zeros(400), site, np.zeros(400), n_blocks=2, shrink=1e-6, balanced=False)
    aligned = align_blocks(site, maps)
    want, got = feature_moments(source), feature_moments(aligned)
    assert got.mean == pytest.approx(want.mean, abs=1e-6)
    for block in (slice(0, 3), slice(3, 6)):
        assert got.cov[block, block] == pytest.approx(want.cov[block, block], rel=1e-3, abs=1e-3)
    with pytest.raises(ValueError, match="positive"):
        fit_blocks(source, np.zeros(400), site, np.zeros(400), n_blocks=2, shrink=0.0)


def test_coral_with_fewer_films_than_features_is_the_full_eigensolution():
    from pneumo_core.adaptation.coral import _shrunk_power

    rng = np.random.default_rng(4)
    few = feature_moments(rng.normal(size=(20, 50)) @ rng.normal(size=(50, 50)), rng.uniform(0.5, 2, 20))
    ridge = 0.1 * np.trace(few.cov) / 50
    values, vectors = np.linalg.eigh(few.cov + ridge * np.eye(50))
    for power in (-0.5, 0.5):
        assert _shrunk_power(few, power, 0.1) == pytest.approx((vectors * values**power) @ vectors.T, abs=1e-9)


def test_patient_halves_keep_patients_whole_and_even():
    patients = np.repeat([f"P{i}" for i in range(40)], [1 + i % 3 for i in range(40)])
    halves = patient_halves(patients, seed=22)
    assert all(len(set(halves[patients == p])) == 1 for p in set(patients))
    sizes = np.bincount(halves)
    assert abs(sizes[0] - sizes[1]) <= 3 and np.array_equal(halves, patient_halves(patients, seed=22))
    assert not np.array_equal(halves, patient_halves(patients, seed=23))


def test_cross_fit_adapts_on_one_half_and_scores_the_other():
    halves = np.array([0, 1, 0, 1, 1])
    seen = []

    def adapt_and_score(adapt_idx, eval_idx):
        seen.append((list(adapt_idx), list(eval_idx)))
        return np.full(len(eval_idx), adapt_idx.sum(), float)

    pooled = cross_fit(halves, adapt_and_score)
    assert seen == [([0, 2], [1, 3, 4]), ([1, 3, 4], [0, 2])]
    assert pooled.tolist() == [8, 2, 8, 2, 2]


def test_study_report_applies_the_shipping_rule_per_fold():
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    halves = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    base = np.array([0.6, 0.2, 0.9, 0.8, 0.7, 0.1, 0.9, 0.8])  # one false positive in each half
    better = np.where(y == 0, 0.1, 0.9)
    report = study_report(y, better, base, halves, [f"P{i}" for i in range(8)], threshold=0.5, n_boot=0)
    assert report["passes_shipping_rule"] and [f["balanced_accuracy_gain"] for f in report["folds"]] == [0.25, 0.25]
    assert report["at_threshold"]["balanced_accuracy"] == 1.0 and report["at_threshold"]["n"] == 8
    half_better = np.where(halves == 1, better, base)  # fold 1 (evaluated on half 1) gains, fold 2 does not
    assert not study_report(y, half_better, base, halves, list(range(8)), 0.5, n_boot=0)["passes_shipping_rule"]


def test_shift_is_the_identity_by_default_and_blur_lowers_detail():
    px = np.random.default_rng(3).integers(0, 256, (64, 64)).astype(np.uint8)
    assert np.array_equal(Shift()(px), px)
    assert Shift(blur=2.5)(px).std() < px.std() / 3
    assert Shift(gamma=0.6)(px).mean() > px.mean()


def test_em_recovers_the_resampled_validation_share_from_the_shipped_scores():
    from pneumo_core.adaptation.methods import em_scores

    val = pd.read_csv(MODELS_DIR / "reports" / "finetuned" / "validation_predictions.csv")
    rng = np.random.default_rng(0)
    keep = np.r_[np.where(val.label == 0)[0], rng.choice(np.where(val.label == 1)[0], 320, replace=False)]
    p = val.p_pneumonia.to_numpy()[keep]
    adjusted, info = em_scores(p, p, train_prevalence=0.5)
    assert info["converged"] and info["estimated_prevalence"] == pytest.approx(0.625, abs=0.03)
    assert np.all(np.argsort(adjusted, kind="stable") == np.argsort(p, kind="stable"))  # a monotone re-weighting


# ---------------------------------------------------------------- Keras parts: a lively model, real films
@pytest.fixture(scope="module")
def probe_and_films():
    pytest.importorskip("tensorflow")
    from pneumo_core.adaptation.batchnorm import Probe
    from pneumo_core.datasets.listing import list_images
    from tests.helpers.tiny_models import lively_model

    train = data_dir() / "train"
    require(train.is_dir(), f"training films not found at {train} (set PNEUMO_DATA_DIR)")
    films = list_images(train)
    films = pd.concat([films[films.label == 0].head(6), films[films.label == 1].head(6)])
    return Probe(lively_model("finetuned", seed=5)), films


def test_probe_scores_like_the_model_and_records_every_batchnorm_input(probe_and_films):
    from pneumo_core.adaptation.study import model_inputs

    probe, films = probe_and_films
    x = model_inputs(films.path)
    run = probe.run(x, moments=True, batch_size=5)
    p_model = probe.model.predict(x, verbose=0)[:, 0]
    assert 1 / (1 + np.exp(-run.logit)) == pytest.approx(p_model, abs=1e-5)
    assert len(run.moments[0]) == len(probe.layers) > 30
    first = probe.layers[0]  # bn_Conv1 reads the first convolution's output
    conv = probe.model.get_layer("mobilenetv2_base").get_layer("Conv1")
    import keras

    maps = keras.Model(probe.model.get_layer("mobilenetv2_base").input, conv.output).predict(x, verbose=0)
    assert first.name == "bn_Conv1"
    assert run.moments[0][0] == pytest.approx(maps.mean(axis=(1, 2)), rel=1e-4, abs=1e-5)


def test_adabn_maps_a_blurred_site_onto_the_training_films_and_restores_the_model(probe_and_films):
    from pneumo_core.adaptation.batchnorm import adapt_batchnorm, weighted_moments
    from pneumo_core.adaptation.methods import adabn_scores, source_reference
    from pneumo_core.adaptation.study import model_inputs

    probe, films = probe_and_films
    clean, blurred = model_inputs(films.path), model_inputs(films.path, Shift(blur=2.5))
    source = source_reference(probe, clean, films.label)  # 6 + 6 films: balanced weights are equal weights
    before = probe.statistics()
    # The training films themselves as the site: every layer already matches, nothing changes.
    adapt_batchnorm(probe, source.moments, clean, iterations=1, threshold=0.5, balanced=False)
    same = probe.statistics()
    assert all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(same.mean + same.var, before.mean + before.var))
    # A blurred site: the first layer (its input depends on no other BatchNorm layer) now normalises the
    # blurred films exactly as the original model normalised the clean ones.
    info = adapt_batchnorm(probe, source.moments, blurred, iterations=1, threshold=0.5, balanced=False)
    assert len(info["pseudo_pneumonia_share"]) == 1
    new = probe.statistics()
    site = weighted_moments(probe.run(blurred, moments=True).moments, np.ones(len(blurred)))
    eps = probe.layers[0].epsilon
    z_site = ((site.mean[0] - new.mean[0]) / np.sqrt(new.var[0] + eps), np.sqrt(site.var[0] / (new.var[0] + eps)))
    z_train = ((source.moments.mean[0] - before.mean[0]) / np.sqrt(before.var[0] + eps),
               np.sqrt(source.moments.var[0] / (before.var[0] + eps)))
    assert not np.allclose(new.mean[0], before.mean[0])
    assert z_site[0] == pytest.approx(z_train[0], abs=1e-3) and z_site[1] == pytest.approx(z_train[1], rel=1e-3)
    probe.set_statistics(before)
    adapt_batchnorm(probe, source.moments, blurred, iterations=1, threshold=0.5, balanced=False, layers=1)
    first_only = probe.statistics()
    assert np.allclose(first_only.mean[0], new.mean[0]) and not np.allclose(first_only.mean[0], before.mean[0])
    assert all(np.array_equal(a, b) for a, b in zip(first_only.mean[1:], before.mean[1:]))
    probe.set_statistics(before)
    p, _ = adabn_scores(probe, source, blurred, clean, iterations=1, threshold=0.5)
    assert p.shape == (len(clean),) and np.all((p > 0) & (p < 1))
    restored = probe.statistics()
    assert all(np.array_equal(a, b) for a, b in zip(restored.mean + restored.var, before.mean + before.var))


# ---------------------------------------------------------------- the opt-in action (EM met the shipping rule)
def test_site_threshold_is_the_shipped_threshold_on_reweighted_posteriors():
    from pneumo_core.adaptation.adapt import site_threshold
    from pneumo_core.adaptation.prior_shift import reweight

    for site in (0.3, 0.625, 0.9):
        t = site_threshold(0.549, 0.743, site)
        assert float(reweight(t, 0.743, site)) == pytest.approx(0.549)
    assert site_threshold(0.549, 0.743, 0.5) > 0.549 > site_threshold(0.549, 0.743, 0.9)


def test_adapt_scores_refuses_too_few_films():
    from pneumo_core.adaptation.adapt import MIN_FILMS, adapt_scores
    from pneumo_core.errors import SiteDataError

    with pytest.raises(SiteDataError, match=f"at least {MIN_FILMS}"):
        adapt_scores([0.2] * (MIN_FILMS - 1), 0.549, 0.743)


def test_adapt_model_on_a_normal_heavy_batch_of_real_films_raises_the_threshold(tmp_path):
    import json

    from pneumo_core.adaptation.adapt import MIN_FILMS, adapt_model
    from pneumo_core.datasets.listing import list_images

    train = data_dir() / "train"
    require(train.is_dir(), f"training films not found at {train} (set PNEUMO_DATA_DIR)")
    films = list_images(train)
    batch = pd.concat([films[films.label == 0].head(MIN_FILMS - 20), films[films.label == 1].head(20)])
    record = adapt_model(batch.path, tmp_path / "site")
    assert record["films_scored"] == MIN_FILMS and record["films_not_scored"] == 0
    assert record["estimated_site_prevalence"] < 0.5 < record["train_prevalence"]
    assert record["threshold_site"] > record["threshold_model"]  # fewer PNEUMONIA expected: a higher bar
    written = json.loads((tmp_path / "site" / "adaptation.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert not any(str(p) in json.dumps(written) or p.name in json.dumps(written) for p in map(Path, batch.path))
