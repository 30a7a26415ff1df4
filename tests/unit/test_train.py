"""The trainer end to end on a handful of real films (random backbone: seconds, not hours)."""
import json

import numpy as np
import pandas as pd
import pytest

from pneumo_core.inference.model_files import write_manifest
from pneumo_core.training.trainer import TrainConfig, get_strategy, train, training_split
from tests.helpers.tiny_models import lively_model


def test_training_split_keeps_patients_apart(data_root):
    tr, va = training_split(TrainConfig(data=str(data_root), limit=400))
    assert not set(tr.patient) & set(va.patient)
    assert set(tr.label) == set(va.label) == {0, 1}


def test_training_seed_does_not_move_the_validation_split(data_root):
    """Runs with different training seeds must be validated on the same films (soups, comparisons)."""
    _, va = training_split(TrainConfig(data=str(data_root), seed=42))
    _, va_seed1 = training_split(TrainConfig(data=str(data_root), seed=1))
    _, va_split1 = training_split(TrainConfig(data=str(data_root), split_seed=1))
    assert set(va.file) == set(va_seed1.file)
    assert set(va.file) != set(va_split1.file)


@pytest.mark.parametrize("variant", ["frozen", "finetuned"])
@pytest.mark.slow
def test_train_writes_model_history_and_provenance(tmp_path, data_root, variant):
    cfg = TrainConfig(variant=variant, data=str(data_root), weights=None, out=str(tmp_path), limit=40,
                      head_epochs=2, epochs=1, batch_size=8)
    train(cfg, command="pytest")
    model_path = tmp_path / f"{variant}.keras"
    report = tmp_path / "reports" / variant
    assert model_path.is_file()
    saved = json.loads((report / "training.json").read_text())
    assert saved["command"] == "pytest" and saved["config"]["seed"] == 42
    assert saved["data"]["train_images"] + saved["data"]["val_images"] <= 40
    assert {"tensorflow", "keras"} <= set(saved["versions"])
    assert 0.0 <= saved["threshold"] <= 1.0 and "sensitivity >= 95%" in saved["threshold_rule"]
    assert len(pd.read_csv(report / "history_head.csv")) >= 1
    if variant == "finetuned":
        assert len(pd.read_csv(report / "history_finetune.csv")) == 1
        assert (report / "head_start.weights.h5").is_file()  # WiSE-FT's other end
    assert (report / "ood.npz").is_file()
    val = pd.read_csv(report / "validation_predictions.csv")
    assert val.p_pneumonia.between(0, 1).all()

    # the shipped file has no optimizer state and loads in safe mode
    import zipfile

    with zipfile.ZipFile(model_path) as z:
        assert not any("optimizer" in n for n in z.namelist())
    from pneumo_core.inference.predictor import Predictor

    pred = Predictor(model_path)
    assert pred.threshold == pytest.approx(saved["threshold"])
    assert np.isfinite(pred.predict(sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[0]).ood_distance)


def test_default_strategy_is_the_one_device_strategy():
    import tensorflow as tf

    s = get_strategy("default")
    assert s.num_replicas_in_sync == 1
    assert isinstance(get_strategy("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError):
        get_strategy("quantum")


def test_greedy_soup_keeps_only_members_that_lower_the_validation_loss():
    from pneumo_core.training.combine import greedy_soup

    members = [[np.array([0.0])], [np.array([1.0])], [np.array([10.0])]]

    def loss(w):  # a validation loss whose optimum is 0.4
        return float((w[0][0] - 0.4) ** 2)

    own = [loss(m) for m in members]
    trace = []
    used, weights = greedy_soup(members, own, loss, "greedy", trace)
    assert used == [0, 1] and weights[0][0] == pytest.approx(0.5)  # 10.0 would drag the mean to 3.67
    assert [(t["tried"], t["kept"]) for t in trace] == [([0, 1], True), ([0, 1, 2], False)]
    used, weights = greedy_soup(members, own, loss, "uniform")
    assert used == [0, 1, 2] and weights[0][0] == pytest.approx(11 / 3)
    with pytest.raises(ValueError, match="same architecture"):
        greedy_soup([[np.zeros(2)], [np.zeros(3)]], [0.0, 0.0], loss, "uniform")


@pytest.mark.slow
def test_soup_cli_averages_members_and_writes_a_loadable_model(tmp_path, data_root):
    """Two members (one a perturbed copy of the other) averaged on real validation films."""
    import keras

    from pneumo_core.cli import main
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.training.builders import build_model

    keras.utils.set_random_seed(1)
    a = build_model("finetuned", weights=None)
    b = build_model("finetuned", weights=None)
    rng = np.random.default_rng(0)
    b.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) if w.dtype.kind == "f" and w.ndim > 1 else w
                   for w in a.get_weights()])
    members = [tmp_path / "a.keras", tmp_path / "b.keras"]
    a.save(members[0])
    b.save(members[1])
    write_manifest(tmp_path)  # models one made are loaded only once recorded (models fail closed)
    out = tmp_path / "soup"
    # --limit: a small validation split keeps this to seconds
    assert main(["soup", *map(str, members), "--data", str(data_root), "--out", str(out), "--method", "uniform",
                 "--limit", "60"]) == 0
    info = json.loads((out / "reports" / "finetuned" / "training.json").read_text())
    assert [m["in_soup"] for m in info["soup"]["members"]] == [True, True]
    assert all(len(m["sha256"]) == 64 and np.isfinite(m["val_log_loss"]) for m in info["soup"]["members"])
    souped = keras.saving.load_model(out / "finetuned.keras", compile=False)
    for w_s, w_a, w_b in zip(souped.get_weights(), a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(w_s, (w_a + w_b) / 2, rtol=1e-5, atol=1e-6)
    pred = Predictor(out / "finetuned.keras")  # manifest and OOD detector written like a trained model
    assert pred.threshold == pytest.approx(info["threshold"]) and pred.ood is not None

    assert main(["soup", str(members[0]), str(tmp_path / "missing.keras"), "--data", str(data_root),
                 "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_wise_ft_cli_lands_halfway_between_a_run_and_its_head_only_start(tmp_path, data_root, capsys):
    """A tiny fine-tuned run, then ``wise-ft --alpha 0.5``: every weight is the midpoint of the
    run's saved start and its end, and the result is validated on the run's own films."""
    import keras

    from pneumo_core.cli import main
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.training.builders import build_model

    run = tmp_path / "run"
    train(TrainConfig(variant="finetuned", data=str(data_root), weights=None, out=str(run), limit=40,
                      head_epochs=2, epochs=1, batch_size=8, lr_schedule=None, fine_tune_lr=1e-3), command="pytest")
    start = build_model("finetuned", weights=None)
    start.load_weights(str(run / "reports" / "finetuned" / "head_start.weights.h5"))
    end = keras.saving.load_model(run / "finetuned.keras", compile=False)
    moved = [not np.allclose(a, b) for a, b in zip(start.get_weights(), end.get_weights())]
    assert any(moved) and not all(moved)  # phase 2 changed the top layers, not the frozen ones

    out = tmp_path / "wise"
    assert main(["wise-ft", str(run / "finetuned.keras"), "--alpha", "0.5", "--out", str(out)]) == 0
    wise = keras.saving.load_model(out / "finetuned.keras", compile=False)
    for w, a, b in zip(wise.get_weights(), start.get_weights(), end.get_weights()):
        np.testing.assert_allclose(w, (a + b) / 2, rtol=1e-5, atol=1e-6)
    info = json.loads((out / "reports" / "finetuned" / "training.json").read_text())
    run_info = json.loads((run / "reports" / "finetuned" / "training.json").read_text())
    assert info["wise_ft"]["alpha"] == 0.5 and info["wise_ft"]["finetuned"]["command"] == "pytest"
    assert info["data"]["val_images"] == run_info["data"]["val_images"]
    assert len(pd.read_csv(out / "reports" / "finetuned" / "history_finetune.csv")) == 1
    assert Predictor(out / "finetuned.keras").threshold == pytest.approx(info["threshold"])

    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:
        main(["wise-ft", str(run / "finetuned.keras"), "--alpha", "1.5", "--out", str(out)])
    assert usage.value.code == 2 and "from 0 to 1" in capsys.readouterr().err
    frozen = tmp_path / "frozen.keras"
    build_model("frozen", weights=None).save(frozen)
    assert main(["wise-ft", str(frozen), "--out", str(tmp_path / "x")]) == 2
    assert "head-only start" in capsys.readouterr().err


def test_soup_refuses_a_member_validated_on_other_films(tmp_path, data_root, capsys):
    """A member trained with another split may have trained on the soup's validation films."""
    from pneumo_core.cli import main
    from pneumo_core.training.builders import build_model

    path = tmp_path / "m" / "finetuned.keras"
    path.parent.mkdir()
    build_model("finetuned", weights=None).save(path)
    _, other_val = training_split(TrainConfig(data=str(data_root), limit=60, split_seed=7))
    (path.parent / "reports" / "finetuned").mkdir(parents=True)
    other_val.assign(p_pneumonia=0.5).to_csv(path.parent / "reports" / "finetuned" / "validation_predictions.csv")
    assert main(["soup", str(path), str(path), "--data", str(data_root), "--out", str(tmp_path / "out"),
                 "--limit", "60"]) == 2
    assert "validated on a different split" in capsys.readouterr().err
    assert not (tmp_path / "out" / "finetuned.keras").exists()


@pytest.mark.slow
def test_ensemble_cli_writes_a_model_whose_p_is_the_mean_logit(tmp_path, data_root):
    """``ensemble`` on two members with clearly different logits: the result is the sigmoid of the
    mean logit (not the mean probability, not member 0), members are ordered by validation loss,
    the OOD detector sits on the best member's 1280 features, and a Predictor loads it like any
    shipped model."""
    from pneumo_core.cli import main
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.inference.preprocess import model_input

    paths = []
    for k, shift in enumerate((2.5, 0.0)):  # member 0 (as given) leans hard to PNEUMONIA: the worse loss
        m = lively_model("finetuned", seed=10 + k)
        kernel, bias = m.get_layer("logit").get_weights()
        m.get_layer("logit").set_weights([kernel, bias + shift])
        paths.append(tmp_path / f"m{k}.keras")
        m.save(paths[-1])
    write_manifest(tmp_path)  # models one made are loaded only once recorded (models fail closed)
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, paths), "--data", str(data_root), "--out", str(out), "--limit", "60"]) == 0
    info = json.loads((out / "reports" / "finetuned" / "training.json").read_text())
    members = info["ensemble"]["members"]
    assert len(members) == 2
    assert members[0]["val_log_loss"] < members[1]["val_log_loss"] - 0.05, "the two losses must differ"
    assert [m["file"] for m in members] == [str(paths[1]), str(paths[0])], "not ordered by validation loss"
    pred = Predictor(out / "finetuned.keras")
    assert pred.ood.mean.shape == (1280,) and pred.threshold == pytest.approx(info["threshold"])

    films = sorted((data_root / "test" / "NORMAL").glob("*.jpeg"))[:2] + sorted(
        (data_root / "test" / "PNEUMONIA").glob("*.jpeg"))[:2]
    x = np.stack([model_input(load_path(f)) for f in films])
    p_ens, features = pred.predict_arrays(x)
    ps = np.array([Predictor(p, verify=False).predict_arrays(x)[0] for p in paths], "float64")
    assert 0.01 < ps.min() and ps.max() < 0.99
    logits = np.log(ps / (1 - ps))
    assert np.abs(logits[0] - logits[1]).min() > 1.0, "members must disagree for the check to mean anything"
    mean_logit = 1 / (1 + np.exp(-logits.mean(axis=0)))
    np.testing.assert_allclose(p_ens, mean_logit, rtol=1e-3, atol=1e-4)
    assert np.abs(p_ens - ps.mean(axis=0)).max() > 0.01, "indistinguishable from the mean of probabilities"
    assert np.abs(p_ens - ps[0]).max() > 0.05 and np.abs(p_ens - ps[1]).max() > 0.05
    assert features.shape == (4, 2560) and np.isfinite(pred.ood.distance(features)).all()
    # the OOD features are the best member's (paths[1]) pooled features, placed first
    _, best_features = Predictor(paths[1], verify=False).predict_arrays(x)
    np.testing.assert_allclose(features[:, :1280], best_features, rtol=1e-3, atol=1e-4)
    assert np.isfinite(pred.predict(films[0]).ood_distance)
