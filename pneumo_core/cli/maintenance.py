"""``rethreshold``, ``calibrate-ood``, ``manifest`` and ``export``: model maintenance (``calibrate-ood`` and
``export`` need TensorFlow: requirements-train.txt; ``rethreshold`` and ``manifest`` read files only)."""
from __future__ import annotations

import sys

from pneumo_core.cli.common import EXIT_OK, int_at_least, needs_tensorflow, print_json


def cmd_rethreshold(args) -> int:
    from pneumo_core.artifacts import reports_dir
    from pneumo_core.inference.model_files import resolve_model_path
    from pneumo_core.training.trainer import update_threshold

    path = resolve_model_path(args.model)
    info = update_threshold(reports_dir(path))
    print_json({"model": path.stem, "threshold": info["threshold"], "threshold_rule": info["threshold_rule"],
                "operating_points": info["operating_points"]})
    print(f"note: {reports_dir(path) / 'metrics.json'} still holds the test figures at the old threshold; rerun "
          f"python -m pneumo_core evaluate --model {args.model} --data DIR/test --write-report {reports_dir(path)}",
          file=sys.stderr)
    return EXIT_OK


@needs_tensorflow
def cmd_calibrate_ood(args) -> int:
    from pneumo_core.errors import ModelLoadError
    from pneumo_core.inference.model_files import resolve_model_path
    from pneumo_core.training.trainer import TrainConfig, recalibrate_ood

    path = resolve_model_path(args.model)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    print_json(recalibrate_ood(path, TrainConfig(data=args.data, split_seed=args.split_seed)))
    return EXIT_OK


def cmd_manifest(args) -> int:
    from pneumo_core.config import MODELS_DIR
    from pneumo_core.inference.model_files import write_manifest

    print_json(write_manifest(args.dir or MODELS_DIR))
    return EXIT_OK


@needs_tensorflow
def cmd_export(args) -> int:
    from pneumo_core.training.export import export_tflite

    print_json(export_tflite(args.model, out=args.out, quantize=args.quantize, data=args.data,
                             n_calib=args.calibration_images, seed=args.seed))
    return EXIT_OK


def register(sub) -> None:
    """``rethreshold``, ``calibrate-ood``, ``manifest`` and ``export`` on the subparsers ``sub``."""
    r = sub.add_parser("rethreshold", help="re-derive a model's threshold and presets from its saved validation "
                       "scores (after a change of rule; no data, no test split)")
    r.add_argument("--model", default="finetuned", help="'finetuned' (default), 'frozen', or a path to a .keras model")
    r.set_defaults(func=cmd_rethreshold)

    c = sub.add_parser("calibrate-ood", help="fit a model's not-a-chest-X-ray detector on the training films")
    c.add_argument("--model", default="finetuned", help="'finetuned' (default), 'frozen', or a path to a .keras model")
    c.add_argument("--data", required=True, help="dataset root with train/ (or the train folder itself)")
    c.add_argument("--split-seed", "--seed", dest="split_seed", type=int, default=42,
                   help="the --split-seed the model was trained with (same patient split); --seed is the older "
                        "spelling, kept for existing scripts")
    c.set_defaults(func=cmd_calibrate_ood)

    m = sub.add_parser("manifest", help="record the SHA-256 of the models (.keras, the shipped .tflite exports) "
                       "and their OOD detectors in models/MANIFEST.json")
    m.add_argument("--dir", default=None)
    m.set_defaults(func=cmd_manifest)

    x = sub.add_parser("export", help="export a model to TensorFlow Lite (float32, float16 or int8)")
    x.add_argument("--model", default="finetuned", help="'finetuned' (default), 'frozen', or a path to a .keras model")
    x.add_argument("--format", choices=["tflite"], default="tflite")
    x.add_argument("--quantize", choices=["none", "float16", "int8"], default="none",
                   help="none: float32; float16: float16 weights; int8: weights and activations, calibrated "
                        "on training films")
    x.add_argument("--out", help="output file (default: models/<model>[.<quantize>].tflite)")
    x.add_argument("--data", help="dataset root with train/ (or the train folder) for int8 calibration "
                   "(default: $PNEUMO_DATA_DIR or ../shared/data/chest_xray)")
    x.add_argument("--calibration-images", type=int_at_least(1), default=300,
                   help="training films used for int8 calibration")
    x.add_argument("--seed", type=int, default=42)
    x.set_defaults(func=cmd_export)
