"""The trainer end to end on a handful of real films (random backbone: seconds, not hours)."""
import json

import numpy as np
import pandas as pd
import pytest

from pneumo_core.train import TrainConfig, get_strategy, train, training_split


def test_training_split_keeps_patients_apart(data_root):
    tr, va = training_split(TrainConfig(data=str(data_root), limit=400))
    assert not set(tr.patient) & set(va.patient)
    assert set(tr.label) == set(va.label) == {0, 1}


@pytest.mark.parametrize("variant", ["frozen", "finetuned"])
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
    assert (report / "ood.npz").is_file()
    val = pd.read_csv(report / "validation_predictions.csv")
    assert val.p_pneumonia.between(0, 1).all()

    # the shipped file has no optimizer state and loads in safe mode
    import zipfile

    with zipfile.ZipFile(model_path) as z:
        assert not any("optimizer" in n for n in z.namelist())
    from pneumo_core.infer import Predictor

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
