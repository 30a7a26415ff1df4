"""Training both variants: head on cached backbone features, then (fine-tuned) the top layers.

Protocol: a patient-grouped, stratified validation split is carved from ``train/``; early
stopping, checkpoint choice and the decision threshold use it alone. The test split is never
read here.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_core import recorded_paths
from pneumo_core.artifacts import reports_dir
from pneumo_core.config import model_path
from pneumo_core.datasets import listing
from pneumo_core.evaluation.metrics import choose_threshold, metrics_at, operating_points, threshold_rule
from pneumo_core.inference.model_files import member_feature_dim, record_ood_detector, write_manifest
from pneumo_core.inference.ood import MahalanobisOOD
from pneumo_core.inference.predictor import Predictor
from pneumo_core.training import data as dataset
from pneumo_core.training.builders import build_backbone, build_head, build_model


@dataclass
class TrainConfig:
    """Every setting of one training run (recorded in ``training.json``)."""

    variant: str = "finetuned"
    data: str = ""
    weights: str = "imagenet"
    out: str = "models"
    seed: int = 42
    # The validation split has its own seed, so runs with different training seeds are
    # validated (early stopping, threshold, soup selection) on the same films.
    split_seed: int = 42
    # Seed of phase 1 (the head on cached features) when it differs from ``seed``: runs that
    # share it start fine-tuning from the same weights, which is what a weight soup needs.
    head_seed: int | None = None
    # Which films train, validate and test (pneumo_core.datasets.protocols); validation and the threshold
    # come from the protocol's own validation part.
    protocol: str = "official"
    val_fraction: float = 0.15  # official protocol: share of train/ held out by patient
    batch_size: int = 32
    head_epochs: int = 40
    head_lr: float = 1e-3
    epochs: int = 30  # fine-tuning epochs (finetuned only)
    fine_tune_lr: float = 5e-5
    lr_schedule: str = "plateau"  # plateau: x0.3 when val loss stalls; cosine: decay to 0 over `epochs`
    patience: int = 6
    dropout: float = 0.3
    augment: dict = field(default_factory=lambda: asdict(dataset.Augment()))
    distribute: str = "default"  # default | mirrored | multiworker
    limit: int | None = None  # use only this many training images (smoke tests)


#: Weights of a fine-tuned run before phase 2 (ImageNet base, trained head), beside its reports.
HEAD_START = "head_start.weights.h5"


def training_split(cfg: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, validation) frames of ``cfg.protocol``: stratified, seeded, patient-grouped
    (except ``image-resplit``, which splits by image on purpose)."""
    from pneumo_core.datasets.protocols import check_disjoint, split

    ps = split(cfg.data, cfg.protocol, cfg.split_seed, cfg.limit, cfg.val_fraction)
    check_disjoint(ps)
    return ps.train, ps.val


def split_summary(cfg: TrainConfig) -> dict:
    """Counts of every part of ``cfg.protocol`` and the patients shared between parts."""
    from pneumo_core.datasets.protocols import split

    return split(cfg.data, cfg.protocol, cfg.split_seed, cfg.limit, cfg.val_fraction).summary()


def get_strategy(name: str):
    """``default`` (one device), ``mirrored`` (all local GPUs), ``multiworker`` (TF_CONFIG cluster)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def _seed_everything(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def pooled_features(base, df: pd.DataFrame, batch_size: int) -> np.ndarray:
    """GlobalAveragePooled ``out_relu`` features of every image (one backbone pass, no augmentation)."""
    import keras

    pool = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])
    ds = dataset.make_dataset(df, batch_size=batch_size, with_labels=False)
    return pool.predict(ds, verbose=0).astype("float32")


def _fit_head(head, f_train, y_train, f_val, y_val, cfg: TrainConfig, weights: dict, log_dir: Path):
    import keras

    head.compile(
        optimizer=keras.optimizers.Adam(cfg.head_lr),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    hist = head.fit(
        f_train, y_train, validation_data=(f_val, y_val), epochs=cfg.head_epochs, batch_size=cfg.batch_size,
        class_weight=weights, verbose=2, shuffle=True,
        callbacks=[
            keras.callbacks.EarlyStopping("val_auc", mode="max", patience=cfg.patience, restore_best_weights=True),
            keras.callbacks.CSVLogger(str(log_dir / "history_head.csv")),
        ],
    )
    return hist.history


def train(cfg: TrainConfig, command: str | None = None) -> dict:
    """Train ``cfg.variant``; write ``<out>/<variant>.keras`` and ``<out>/reports/<variant>/``."""
    import keras

    t0 = time.time()
    _seed_everything(cfg.seed if cfg.head_seed is None else cfg.head_seed)
    report_dir = reports_dir(model_path(cfg.variant, cfg.out))
    report_dir.mkdir(parents=True, exist_ok=True)

    df_train, df_val = training_split(cfg)
    weights = dataset.class_weights(df_train.label)
    y_train = df_train.label.to_numpy("float32")
    y_val = df_val.label.to_numpy("float32")
    print(f"train {len(df_train)} images / {df_train.patient.nunique()} patients, "
          f"val {len(df_val)} / {df_val.patient.nunique()}; class weights {weights}", flush=True)

    strategy = get_strategy(cfg.distribute)
    with strategy.scope():
        base = build_backbone(cfg.weights)
        base.trainable = False
        # Phase 1 (both variants): the head alone, on features computed once. The base is
        # frozen here, so recomputing it every epoch would only burn time.
        t_feat = time.time()
        f_train = pooled_features(base, df_train, cfg.batch_size)
        f_val = pooled_features(base, df_val, cfg.batch_size)
        feat_s = time.time() - t_feat
        print(f"features: {len(df_train) + len(df_val)} images in {feat_s:.0f}s", flush=True)
        head = build_head(cfg.variant, f_train.shape[-1], cfg.dropout)
        history = {"head": _fit_head(head, f_train, y_train, f_val, y_val, cfg, weights, report_dir)}
        model = build_model(cfg.variant, base=base, dropout=cfg.dropout)
        for layer in head.layers[1:]:
            model.get_layer(layer.name).set_weights(layer.get_weights())

        ft_s = 0.0
        if cfg.variant == "finetuned":
            # The head-only start is one end of a WiSE-FT interpolation (combine.wise_ft).
            model.save_weights(str(report_dir / HEAD_START))
            # Phase 2: unfreeze the top layers and train end to end on augmented films.
            t_ft = time.time()
            if cfg.head_seed is not None:
                _seed_everything(cfg.seed)
            aug = dataset.Augment(**cfg.augment)
            ds_train = dataset.make_dataset(df_train, cfg.batch_size, shuffle=True, augment=aug, seed=cfg.seed)
            ds_val = dataset.make_dataset(df_val, cfg.batch_size)
            steps = int(np.ceil(len(df_train) / cfg.batch_size))
            lr = (keras.optimizers.schedules.CosineDecay(cfg.fine_tune_lr, decay_steps=cfg.epochs * steps)
                  if cfg.lr_schedule == "cosine" else cfg.fine_tune_lr)
            callbacks = [
                keras.callbacks.ModelCheckpoint(str(report_dir / "best.weights.h5"), "val_auc", mode="max",
                                                save_best_only=True, save_weights_only=True),
                keras.callbacks.EarlyStopping("val_auc", mode="max", patience=cfg.patience),
                keras.callbacks.CSVLogger(str(report_dir / "history_finetune.csv")),
            ]
            if cfg.lr_schedule == "plateau":
                callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.3, patience=2, min_lr=1e-7))
            model.compile(
                optimizer=keras.optimizers.Adam(lr),
                loss="binary_crossentropy",
                metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
            )
            ckpt = report_dir / "best.weights.h5"
            hist = model.fit(
                ds_train, validation_data=ds_val, epochs=cfg.epochs, class_weight=weights, verbose=2,
                callbacks=callbacks,
            )
            history["finetune"] = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
            model.load_weights(str(ckpt))
            ckpt.unlink()
            ft_s = time.time() - t_ft

    info = {
        "command": command or " ".join(sys.argv),
        "timing_s": {"total": round(time.time() - t0, 1), "feature_cache": round(feat_s, 1),
                     "fine_tune": round(ft_s, 1)},
        "epochs_run": {k: len(next(iter(v.values()))) for k, v in history.items()},
    }
    return save_with_reports(model, cfg, df_train, df_val, info)


def validation_predictions(model, df_val: pd.DataFrame, batch_size: int) -> np.ndarray:
    """P(pneumonia) of ``model`` on every validation film, in ``df_val``'s order."""
    return model.predict(dataset.make_dataset(df_val, batch_size, with_labels=False), verbose=0).ravel()


def save_with_reports(model, cfg: TrainConfig, df_train: pd.DataFrame, df_val: pd.DataFrame, extra: dict,
                       p_val: np.ndarray | None = None, rebuild: bool = True) -> dict:
    """Save ``model`` as ``<out>/<variant>.keras`` with its validation predictions, threshold,
    operating points, provenance (``training.json``), OOD detector and manifest entry.
    ``rebuild``: copy the weights into a fresh, uncompiled :func:`build_model` first (drops the
    optimizer state); an ensemble, never compiled, is saved as it is."""
    import keras
    import tensorflow as tf

    out = Path(cfg.out)
    report_dir = reports_dir(model_path(cfg.variant, out))
    report_dir.mkdir(parents=True, exist_ok=True)
    y_val = df_val.label.to_numpy("float32")
    # Threshold and operating points from validation predictions of the final model.
    if p_val is None:
        p_val = validation_predictions(model, df_val, cfg.batch_size)
    # float64 before anything uses it: the CSV then round-trips exactly, and a film scored
    # exactly at the threshold stays on the same side when the dashboard re-reads it.
    p_val = np.asarray(p_val, dtype=np.float64)
    threshold = choose_threshold(y_val, p_val)
    pd.DataFrame({"file": df_val.file, "patient": df_val.patient, "label": df_val.label, "p_pneumonia": p_val}).to_csv(
        report_dir / "validation_predictions.csv", index=False)

    # Save an uncompiled copy: the shipped file carries no optimizer state.
    path = model_path(cfg.variant, out)
    if rebuild:
        clean = build_model(cfg.variant, weights=None, dropout=cfg.dropout)
        clean.set_weights(model.get_weights())
        model = clean
    model.save(path)

    info = {
        "variant": cfg.variant,
        "model_file": path.name,
        "command": extra.get("command") or " ".join(sys.argv),
        "config": asdict(cfg),
        "data": {
            "root": str(listing.resolve_split_dir(cfg.data, "train")),
            "train_images": len(df_train), "train_patients": int(df_train.patient.nunique()),
            "train_counts": {"NORMAL": int((df_train.label == 0).sum()), "PNEUMONIA": int((df_train.label == 1).sum())},
            "val_images": len(df_val), "val_patients": int(df_val.patient.nunique()),
            "val_counts": {"NORMAL": int((df_val.label == 0).sum()), "PNEUMONIA": int((df_val.label == 1).sum())},
            "class_weights": dataset.class_weights(df_train.label),
        },
        "protocol": split_summary(cfg),
        "threshold": threshold,
        "threshold_rule": threshold_rule(cfg.protocol),
        "operating_points": operating_points(y_val, p_val),
        "validation": metrics_at(y_val, p_val, threshold),
        **{k: v for k, v in extra.items() if k != "command"},
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
    }
    info = recorded_paths.record(info)  # paths relative to the data root or the checkout (pneumo_core.recorded_paths)
    info["ood"] = calibrate_ood(path, cfg)
    (report_dir / "training.json").write_text(json.dumps(info, indent=2))
    write_manifest(out)  # the files this run wrote are the ones to trust from now on
    summary = {"model": str(path), "threshold": threshold, "validation": info["validation"]}
    print(json.dumps(summary, indent=2), flush=True)
    return info


def calibrate_ood(model_path: str | Path, cfg: TrainConfig, target_frr: float = 0.01) -> dict:
    """Fit the model's out-of-distribution detector on its own pooled features of the training
    films, with the threshold set on the validation films (same patient split as training)."""
    model_path = Path(model_path)
    df_train, df_val = training_split(cfg)
    pred = Predictor(model_path, verify=False)

    def feats(frame):
        out = []
        for xb in dataset.make_dataset(frame, cfg.batch_size, with_labels=False):
            out.append(pred.predict_arrays(xb.numpy())[1])
        return np.concatenate(out)

    dim = member_feature_dim(pred.model)  # an ensemble's detector works on its first member's features
    det = MahalanobisOOD.fit(feats(df_train)[:, :dim], feats(df_val)[:, :dim], target_frr)
    report_dir = reports_dir(model_path)
    report_dir.mkdir(parents=True, exist_ok=True)
    det.save(report_dir / "ood.npz")
    return {"method": "Mahalanobis distance, pooled out_relu features, Ledoit-Wolf covariance",
            "threshold": det.threshold, "target_false_rejection_on_validation": target_frr}


def recalibrate_ood(model_path: str | Path, cfg: TrainConfig, target_frr: float = 0.01) -> dict:
    """Refit an existing model's detector (``calibrate_ood``) and record it: its SHA-256 in the
    manifest beside the model and its settings in ``training.json``."""
    model_path = Path(model_path)
    info = calibrate_ood(model_path, cfg, target_frr)
    report_dir = reports_dir(model_path)
    record_ood_detector(model_path.parent, report_dir / "ood.npz")
    training = report_dir / "training.json"
    if training.exists():
        record = {**info, "recalibrated_with": recorded_paths.record_text(" ".join(sys.argv)) or "recalibrate_ood()",
                  "recalibrated_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        training.write_text(json.dumps({**json.loads(training.read_text()), "ood": record}, indent=2))
    return info


def update_threshold(report_dir: str | Path) -> dict:
    """Re-derive the threshold and operating points in ``training.json`` from the saved
    validation predictions (after a change of rule; no retraining, no test data)."""
    report_dir = Path(report_dir)
    for name in ("training.json", "validation_predictions.csv"):
        if not (report_dir / name).is_file():
            raise FileNotFoundError(f"{report_dir / name} not found: rethreshold needs the model's saved reports")
    info = json.loads((report_dir / "training.json").read_text())
    val = pd.read_csv(report_dir / "validation_predictions.csv")
    y, p = val.label.to_numpy(), val.p_pneumonia.to_numpy()
    info["threshold"] = choose_threshold(y, p)
    info["threshold_rule"] = threshold_rule(info.get("config", {}).get("protocol"))
    info["operating_points"] = operating_points(y, p)
    info["validation"] = metrics_at(y, p, info["threshold"])
    (report_dir / "training.json").write_text(json.dumps(info, indent=2))
    return info
