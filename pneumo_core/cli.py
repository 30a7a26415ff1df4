"""python -m pneumo_core train|soup|ensemble|wise-ft|evaluate|predict|rethreshold|calibrate-ood|manifest|export|quiz

A stable, scriptable contract. Exit status: 0 when the command ran (predict: even if some files
could not be read; each gets an "error"), 2 for a usage or input error, reported on stderr in an
"error:" line, after the usage line for a mistyped option (PNEUMO_DEBUG=1 shows the traceback).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys

from pneumo_core.config import DISCLAIMER_PLAIN

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer of TensorFlow's C++ log lines on stderr


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _threshold_source(predictor) -> str:
    """Where the predictor's threshold came from, in the words reports use."""
    from pneumo_core.evaluation.metrics import THRESHOLD_RULE

    # a model's own training record names its protocol's validation part (image-level or by patient)
    validation = predictor.info.get("threshold_rule") or THRESHOLD_RULE
    return {"given": "given on the command line", "validation": validation,
            "default": "0.5 by default: no reports/<model>/training.json beside the model"}[predictor.threshold_source]


def _command_line() -> str:
    return "python -m pneumo_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _cmd_train(args) -> int:
    from pneumo_core.config import backbone_weights
    from pneumo_core.training.trainer import TrainConfig, train

    cfg = TrainConfig(
        variant=args.variant, data=args.data, weights=args.weights or backbone_weights(), out=args.out,
        seed=args.seed, split_seed=args.split_seed, head_seed=args.head_seed, distribute=args.distribute,
        limit=args.limit, protocol=args.protocol,
    )
    if args.lr is not None:
        cfg.fine_tune_lr = args.lr
    if args.lr_schedule:
        cfg.lr_schedule = args.lr_schedule
    if args.patience is not None:
        cfg.patience = args.patience
    if args.augment_scale is not None:
        from dataclasses import asdict

        from pneumo_core.training.data import Augment

        cfg.augment = {k: v * args.augment_scale for k, v in asdict(Augment()).items()}
        cfg.augment["jpeg"] = min(1.0, cfg.augment["jpeg"])  # a probability
    if args.jpeg is not None:
        cfg.augment["jpeg"] = args.jpeg
    if args.crop is not None:
        cfg.augment["crop"] = args.crop
    if args.aspect is not None:
        cfg.augment["aspect"] = args.aspect
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.head_epochs is not None:
        cfg.head_epochs = args.head_epochs
    train(cfg, command=_command_line())
    return 0


def _cmd_combine(args) -> int:
    """``soup`` (average weights) and ``ensemble`` (average logits) of several runs; ``wise-ft`` of one."""
    from pneumo_core.training.combine import ensemble, soup, wise_ft
    from pneumo_core.training.trainer import TrainConfig

    if args.command == "wise-ft":
        wise_ft(args.model, args.out, alpha=args.alpha, data=args.data, command=_command_line())
        return 0
    cfg = TrainConfig(variant=args.variant, data=args.data, out=args.out, split_seed=args.split_seed, limit=args.limit)
    if args.command == "soup":
        soup(args.members, cfg, method=args.method, command=_command_line())
    else:
        ensemble(args.members, cfg, command=_command_line())
    return 0


def _expand_inputs(items) -> list[str]:
    """Files as given; folders expanded (recursively) to the image and DICOM files inside,
    skipping hidden files (``.DS_Store``, editor backups)."""
    from pathlib import Path

    from pneumo_core.imaging.decode import READABLE_SUFFIXES

    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in READABLE_SUFFIXES and not f.name.startswith("."))
            if not found:
                print(f"warning: no image or DICOM files in folder {p}", file=sys.stderr)
            out += found
        else:
            out.append(item)
    return out


def _load_predictor(args):
    from pneumo_core.inference.opening import open_predictor

    predictor = open_predictor(args.model, threshold=args.threshold)
    if predictor.threshold_source == "default":
        print(f"warning: threshold {_threshold_source(predictor)}", file=sys.stderr)
    return predictor


def _cmd_predict(args) -> int:
    if args.dicomweb:  # studies from a PACS (pneumo_core/dicomweb.py)
        if args.images:
            raise ValueError("give image files or folders, or --dicomweb URL, not both")
        from pneumo_core.pacs.dicomweb import predict_from_pacs

        predictor, results = predict_from_pacs(args, _load_predictor)
    else:
        if not args.images or args.study or args.modality or args.limit or args.store_results:
            raise ValueError("give image files or folders (or --dicomweb URL: --study, --modality, --limit and "
                             "--store-results need it)")
        predictor = _load_predictor(args)
        results = predictor.predict_files(_expand_inputs(args.images), batch_size=args.batch_size)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2, allow_nan=False))
    else:
        print(f"model {predictor.name}, threshold {predictor.threshold:.3f} ({DISCLAIMER_PLAIN.rstrip('.')})")
        for r in results:
            if r.error:
                print(f"{r.file}\tERROR\t{r.error}")
            else:
                print(f"{r.file}\t{r.label}\tp_pneumonia={r.p_pneumonia:.4f}")
    return 0


def _cmd_evaluate(args) -> int:
    from pathlib import Path

    import pandas as pd

    from pneumo_core.evaluation.metrics import full_report, write_report
    from pneumo_core.imaging.decode import READABLE_SUFFIXES
    from pneumo_core.training import data as dataset

    if args.protocol:
        from pneumo_core.training.protocols import test_part

        df = test_part(args.data, args.protocol, args.split_seed)
        # train/ and test/ reuse file names (IM-0001-0001.jpeg is in both): keep the folder
        df = df.assign(file=[str(Path(p).relative_to(Path(args.data))) for p in df.path])
        split_dir = f"{args.protocol} test part (split seed {args.split_seed}) of {args.data}"
    else:
        split_dir = dataset.resolve_split_dir(args.data, "test")
        df = dataset.list_images(split_dir, suffixes=READABLE_SUFFIXES)
    predictor = _load_predictor(args)
    results = predictor.predict_files(df.path, batch_size=args.batch_size, reject_ood=False)
    failed = [r for r in results if r.error]
    if failed:
        print(f"error: {len(failed)} file(s) could not be read, e.g. {failed[0].file}: {failed[0].error}",
              file=sys.stderr)
        return 2
    preds = pd.DataFrame({"file": df.file, "patient": df.patient, "label": df.label,
                          "p_pneumonia": [r.p_pneumonia for r in results],
                          "is_chest_xray": [r.is_chest_xray for r in results]})
    meta = {
        "model": predictor.name, "model_sha256": predictor.sha256, "data": str(split_dir),
        "counts": {"NORMAL": int((df.label == 0).sum()), "PNEUMONIA": int((df.label == 1).sum())},
        "threshold_rule": _threshold_source(predictor),
        "protocol": args.protocol or "official",
        "ood_rejected_fraction": (float(1 - preds.is_chest_xray.mean()) if predictor.ood is not None else None),
    }
    y, p = preds.label.to_numpy(), preds.p_pneumonia.to_numpy()
    if args.write_report:
        report = write_report(Path(args.write_report), preds, predictor.threshold, meta, n_boot=args.bootstrap)
    else:
        report = {**meta, **full_report(y, p, predictor.threshold, n_boot=args.bootstrap, groups=preds.patient)}
    summary = {k: v for k, v in report["at_threshold"].items() if k != "ci95"}
    out = {**meta, **summary, "ci95": report["at_threshold"]["ci95"], "at_0.5": report["at_0.5"]}
    if args.json:
        print(json.dumps(out, indent=2, allow_nan=False))
    else:
        print(f"{predictor.name} on {split_dir} ({len(df)} images), threshold {predictor.threshold:.3f}")
        for k in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
            ci = f"  (95% CI {out['ci95'][k][0]:.4f}-{out['ci95'][k][1]:.4f})" if out["ci95"] else ""
            print(f"  {k:12s} {out[k]:.4f}{ci}")
        print(f"  confusion [[TN, FP], [FN, TP]] = {out['confusion_matrix']}")
    return 0


def _cmd_calibrate_ood(args) -> int:
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.model_files import resolve_model_path
    from pneumo_core.training.trainer import TrainConfig, recalibrate_ood

    path = resolve_model_path(args.model)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    info = recalibrate_ood(path, TrainConfig(data=args.data, split_seed=args.split_seed))
    print(json.dumps(info, indent=2))
    return 0


def _cmd_rethreshold(args) -> int:
    from pneumo_core.artifacts import reports_dir
    from pneumo_core.inference.model_files import resolve_model_path
    from pneumo_core.training.trainer import update_threshold

    path = resolve_model_path(args.model)
    info = update_threshold(reports_dir(path))
    print(json.dumps({"model": path.stem, "threshold": info["threshold"], "threshold_rule": info["threshold_rule"],
                      "operating_points": info["operating_points"]}, indent=2))
    print(f"note: {reports_dir(path) / 'metrics.json'} still holds the test figures at the old threshold; rerun "
          f"python -m pneumo_core evaluate --model {args.model} --data DIR/test --write-report {reports_dir(path)}",
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pneumo_core`` argument parser with every subcommand."""
    from pneumo_core.config import SHIPPED_VARIANTS
    from pneumo_core.training.protocols import PROTOCOLS

    p = argparse.ArgumentParser(prog="python -m pneumo_core", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a variant on DIR/train (validation carved from it by patient)")
    t.add_argument("--variant", choices=SHIPPED_VARIANTS, required=True)
    t.add_argument("--data", required=True, help="dataset root with train/ (or the train folder itself)")
    t.add_argument("--weights", help="ImageNet MobileNetV2 weights: a local .weights.h5 or 'imagenet' "
                   "(default: $PNEUMO_WEIGHTS, the offline copy in ../shared/weights, else 'imagenet')")
    t.add_argument("--out", default="models", help="output folder (default: models)")
    t.add_argument("--epochs", type=_int_at_least(1), help="fine-tuning epochs (max; early stopping on val AUC)")
    t.add_argument("--head-epochs", type=_int_at_least(1), help="head-training epochs (max)")
    t.add_argument("--seed", type=int, default=42, help="training seed (data order, augmentation, dropout)")
    t.add_argument("--split-seed", type=int, default=42,
                   help="seed of the patient-grouped validation split (keep it fixed to compare or average runs)")
    t.add_argument("--head-seed", type=int, help="seed of phase 1 (head training) if not --seed; runs that share "
                   "it start fine-tuning from the same weights and can be averaged with `soup`")
    t.add_argument("--protocol", choices=PROTOCOLS, default="official",
                   help="which films train and validate: official (validation from train/ by patient; default), "
                        "patient-resplit or image-resplit (train/ and test/ pooled, 80/10/10 by patient or by image)")
    t.add_argument("--lr", type=float, help="fine-tuning learning rate (default 5e-5)")
    t.add_argument("--lr-schedule", choices=["plateau", "cosine"], help="fine-tuning LR schedule (default plateau)")
    t.add_argument("--patience", type=_int_at_least(1), help="early-stopping patience in epochs (default 6)")
    t.add_argument("--augment-scale", type=float, help="multiply every augmentation magnitude (default 1.0)")
    t.add_argument("--jpeg", type=_probability, help="share of training films re-encoded as JPEG at quality 30-95 "
                   "(default 0.5; 0 turns it off, as in fine-tuned runs 1 and 2)")
    t.add_argument("--crop", type=float, help="random resized crop: largest share of a film's area cut away "
                   "(e.g. 0.3; default 0, off)")
    t.add_argument("--aspect", type=float, help="random resized crop: log aspect-ratio range of the kept window "
                   "(e.g. 0.2 for 0.82-1.22; default 0, off)")
    t.add_argument("--distribute", choices=["default", "mirrored", "multiworker"], default="default",
                   help="tf.distribute strategy (mirrored: all local GPUs; multiworker: TF_CONFIG cluster)")
    t.add_argument("--limit", type=_int_at_least(2), help="train on at most this many images (smoke runs)")
    t.set_defaults(func=_cmd_train)

    so = sub.add_parser("soup", help="average the weights of runs that share their starting weights (model soup)")
    en = sub.add_parser("ensemble", help="one model that averages the logits of several runs (output ensemble)")
    for sp in (so, en):
        sp.add_argument("members", nargs="+", help=".keras files of one variant, validated on the same split"
                        + (" and trained with the same --head-seed" if sp is so else ""))
        sp.add_argument("--variant", choices=SHIPPED_VARIANTS, default="finetuned",
                        help="the name the result is saved under (default: finetuned)")
        sp.add_argument("--data", required=True,
                        help="dataset root with train/ (the validation split is carved from it)")
        sp.add_argument("--out", default="models", help="output folder (default: models)")
        sp.add_argument("--split-seed", type=int, default=42, help="the --split-seed the members were trained with")
        sp.add_argument("--limit", type=_int_at_least(2), help="the --limit the members were trained with (smoke runs)")
        sp.set_defaults(func=_cmd_combine)
    wi = sub.add_parser("wise-ft", help="interpolate a fine-tuned run's weights with its head-only start (WiSE-FT)")
    wi.add_argument("model", help="a fine-tuned .keras run saved by `train` (its reports hold the start)")
    wi.add_argument("--alpha", type=_probability, default=0.5, help="share of the way to the fine-tuned end (0.5)")
    wi.add_argument("--data", help="dataset root (default: the one in the run's training.json)")
    wi.add_argument("--out", required=True, help="output folder (not the run's own: it would be overwritten)")
    wi.set_defaults(func=_cmd_combine)
    so.add_argument("--method", choices=["greedy", "uniform"], default="greedy",
                    help="greedy: add members in order of validation loss while the soup's loss does not rise; "
                         "uniform: average all")

    def model_args(sp):
        sp.add_argument("--model", default="finetuned",
                        help="'finetuned' (default), 'frozen', or a path to a .keras or exported .tflite model")
        sp.add_argument("--threshold", type=_probability,
                        help="decision threshold from 0 to 1 (default: the model's validation-chosen one)")
        sp.add_argument("--batch-size", type=_int_at_least(1), default=32, help="films per forward pass (default 32)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    e = sub.add_parser("evaluate",
                       help="metrics on a labelled split (NORMAL/ and PNEUMONIA/ inside, or a dataset root)")
    model_args(e)
    e.add_argument("--data", required=True, help="a folder with NORMAL/ and PNEUMONIA/ inside, or a dataset root "
                   "(its test/ is used)")
    e.add_argument("--protocol", choices=PROTOCOLS, help="evaluate on this protocol's test part of the dataset "
                   "root --data (default: the folder given, or its test/)")
    e.add_argument("--split-seed", type=int, default=42, help="with --protocol: the seed the model was trained with")
    e.add_argument("--bootstrap", type=_int_at_least(0), default=1000,
                   help="bootstrap resamples for the 95%% CIs (0: no CIs; default 1000)")
    e.add_argument("--write-report", metavar="DIR", help="also write metrics.json, test_predictions.csv, roc_curve.csv")
    e.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", help="label images (files or folders; PNG, JPEG, DICOM, ...)")
    model_args(pr)
    pr.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR",
                    help="image or DICOM files, or folders (searched recursively)")
    pacs = pr.add_argument_group("from a PACS (credentials only from PNEUMO_DICOMWEB_USER/PASSWORD or _TOKEN)")
    pacs.add_argument("--dicomweb", metavar="URL", help="score studies from this DICOMweb server instead of files "
                      "(e.g. https://pacs.example.org/dicom-web); file = studies/<uid>/series/<uid>/instances/<uid>")
    pacs.add_argument("--study", action="append", metavar="UID", help="Study Instance UID to score (repeatable; "
                      "default: every study found by --modality and --limit)")
    pacs.add_argument("--modality", metavar="LIST", help="modalities to search and score (default CR,DX)")
    pacs.add_argument("--limit", type=_int_at_least(1), help="at most this many studies found (default 100)")
    pacs.add_argument("--store-results", action="store_true", help="store one Secondary Capture per scored film "
                      "(heatmap, score, research-use banner) in a new series of its study")
    pr.set_defaults(func=_cmd_predict)

    r = sub.add_parser("rethreshold", help="re-derive a model's threshold and presets from its saved validation "
                       "scores (after a change of rule; no data, no test split)")
    r.add_argument("--model", default="finetuned", help="'finetuned' (default), 'frozen', or a path to a .keras model")
    r.set_defaults(func=_cmd_rethreshold)

    c = sub.add_parser("calibrate-ood", help="fit a model's not-a-chest-X-ray detector on the training films")
    c.add_argument("--model", default="finetuned", help="'finetuned' (default), 'frozen', or a path to a .keras model")
    c.add_argument("--data", required=True, help="dataset root with train/ (or the train folder itself)")
    c.add_argument("--split-seed", "--seed", dest="split_seed", type=int, default=42,
                   help="the --split-seed the model was trained with (same patient split); --seed is the older "
                        "spelling, kept for existing scripts")
    c.set_defaults(func=_cmd_calibrate_ood)

    m = sub.add_parser("manifest", help="record the SHA-256 of the models in models/MANIFEST.json")
    m.add_argument("--dir", default=None)
    m.set_defaults(func=_cmd_manifest)

    x = sub.add_parser("export", help="export a model to TensorFlow Lite (float32, float16 or int8)")
    x.add_argument("--model", default="finetuned", help="'finetuned' (default), 'frozen', or a path to a .keras model")
    x.add_argument("--format", choices=["tflite"], default="tflite")
    x.add_argument("--quantize", choices=["none", "float16", "int8"], default="none",
                   help="none: float32; float16: float16 weights; int8: weights and activations, calibrated "
                        "on training films")
    x.add_argument("--out", help="output file (default: models/<model>[.<quantize>].tflite)")
    x.add_argument("--data", help="dataset root with train/ (or the train folder) for int8 calibration "
                   "(default: $PNEUMO_DATA_DIR or ../shared/data/chest_xray)")
    x.add_argument("--calibration-images", type=_int_at_least(1), default=300,
                   help="training films used for int8 calibration")
    x.add_argument("--seed", type=int, default=42)
    x.set_defaults(func=_cmd_export)
    _add_quiz_parser(sub)
    return p


def _cmd_export(args) -> int:
    from pneumo_core.training.export import export_tflite

    meta = export_tflite(args.model, out=args.out, quantize=args.quantize, data=args.data,
                         n_calib=args.calibration_images, seed=args.seed)
    print(json.dumps(meta, indent=2))
    return 0


def _cmd_manifest(args) -> int:
    from pneumo_core.config import MODELS_DIR
    from pneumo_core.inference.model_files import write_manifest

    print(json.dumps(write_manifest(args.dir or MODELS_DIR), indent=2))
    return 0


def _positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of minutes above 0, got {text!r}")
    return value


def _add_quiz_parser(sub) -> None:
    q = sub.add_parser("quiz", help="reader quizzes: create one, read its results, close it (database: "
                       "$PNEUMO_DB_URL, default a SQLite file in the user's data folder)")
    qs = q.add_subparsers(dest="quiz_command", required=True)
    new = qs.add_parser("new", help="create a quiz; prints its join code and teacher key (the key only here, once)")
    new.add_argument("--films", type=_int_at_least(1), default=20, help="films in the quiz (default 20)")
    new.add_argument("--seed", type=int, help="seed of the film draw and order (default: random, printed)")
    new.add_argument("--data", help="draw from this dataset's test split (default: the bundled teaching set)")
    new.add_argument("--time-limit", type=_positive_minutes, metavar="MIN",
                     help="minutes each reader has from joining (default: none)")
    new.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("results", "every reader's answers, sensitivity, specificity, AUC and kappa"),
                       ("close", "close the quiz: no more joins or answers; readers may see their results")):
        sp = qs.add_parser(name, help=text)
        sp.add_argument("code", help="the quiz's join code")
        sp.add_argument("--teacher-key", default=os.environ.get("PNEUMO_TEACHER_KEY"),
                        help="the key printed by `quiz new` (default: $PNEUMO_TEACHER_KEY)")
        if name == "results":
            fmt = sp.add_mutually_exclusive_group()
            fmt.add_argument("--json", action="store_true", help="machine-readable output")
            fmt.add_argument("--csv", action="store_true", help="one CSV row per answer, with the reader's figures")
    q.set_defaults(func=_cmd_quiz)


def _cmd_quiz(args) -> int:
    from pneumo_core.quiz.report import run_cli

    return run_cli(args)


def main(argv=None) -> int:
    """Run the CLI on ``argv``; returns the exit status (2 and one line on stderr for the user's errors)."""
    args = build_parser().parse_args(argv)
    from pneumo_core.errors import ModelLoadError

    try:
        return args.func(args)
    except (ModelLoadError, OSError, ValueError) as exc:  # ImageError is a ValueError
        # Bad paths, folders, models and data are the user's to fix: one line, no traceback.
        # The same types can come from deep inside TensorFlow, so the line says how to see more.
        if os.environ.get("PNEUMO_DEBUG"):
            raise
        print(f"error: {exc} (PNEUMO_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
