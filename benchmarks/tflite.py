"""TFLite exports (float32, float16, int8) against the Keras model: size, latency, test metrics.

    python -m benchmarks.tflite [--model finetuned] [--runs 100] [--calibration-images 300]
                                             [--keep DIR]

Exports ``--model`` three ways into a temporary folder (``--keep DIR`` keeps them): ``none``
(float32), ``float16`` (float16 weights) and ``int8`` (calibrated on ``--calibration-images``
training films; the test split is never used for calibration). Then, in one process:

* latency, batch 1 on a ready model input, round-robin, ``--runs`` calls each after warm-up:
  label (forward) and label + Grad-CAM (forward + backward), Keras compiled path vs each export;
  and end to end, ``predict(jpeg_bytes, explain=True)``;
* the 624 test films through ``predict_files`` (``reject_ood=False``): accuracy, sensitivity,
  specificity and AUC at the model's validation-chosen threshold
  (``models/reports/<model>/training.json``), the largest |p - p_keras|, label agreement
  with Keras, the fraction the OOD check would reject, and images/s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import _bench as bench

FORMATS = ("none", "float16", "int8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="finetuned")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--calibration-images", type=int, default=300)
    ap.add_argument("--data", default=None)
    ap.add_argument("--keep", help="write the exports here instead of a temporary folder")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    bench.warn_if_busy()
    from pneumo_core.config import data_dir
    from pneumo_core.datasets import listing
    from pneumo_core.evaluation.metrics import metrics_at
    from pneumo_core.imaging.decode import load_path
    from pneumo_core.inference.predictor import Predictor
    from pneumo_core.inference.preprocess import model_input
    from pneumo_core.training.export import export_tflite

    keras_pred = Predictor(args.model, kind="keras")
    threshold = keras_pred.threshold
    tmp = tempfile.TemporaryDirectory() if not args.keep else None
    folder = Path(args.keep or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    # The exports sit beside a link to the model's reports, so each finds its threshold and OOD detector.
    src_reports = keras_pred.report_dir
    if src_reports is not None and src_reports.is_dir() and not (folder / "reports" / keras_pred.name).exists():
        (folder / "reports").mkdir(exist_ok=True)
        (folder / "reports" / keras_pred.name).symlink_to(src_reports.resolve())

    exports = {}
    for q in FORMATS:
        t0 = time.perf_counter()
        meta = export_tflite(args.model, out=folder / (f"{keras_pred.name}.tflite" if q == "none"
                                                       else f"{keras_pred.name}.{q}.tflite"),
                             quantize=q, data=args.data, n_calib=args.calibration_images)
        exports[q] = {"path": folder / meta["file"], "bytes": meta["bytes"], "export_s": time.perf_counter() - t0}
    preds = {"keras": keras_pred} | {q: Predictor(e["path"]) for q, e in exports.items()}
    for q in FORMATS:
        assert preds[q].threshold == threshold, (q, preds[q].threshold, threshold)

    # ---------------------------------------------------------------- latency
    df = listing.list_images(listing.resolve_split_dir(args.data or data_dir(), "test"))
    film = df.path.iloc[len(df) // 2]
    data = open(film, "rb").read()
    x = model_input(load_path(film))[None]
    fns = {}
    for k, p in preds.items():
        fns[(k, "label")] = (lambda p=p: p.predict_arrays(x))
        fns[(k, "label + Grad-CAM")] = (lambda p=p: p.explain_arrays(x))
        fns[(k, "predict(bytes, explain=True)")] = (lambda p=p: p.predict(data, explain=True))
    lat = {k: bench.stats(v) for k, v in bench.interleaved(fns, runs=args.runs, warmup=args.warmup).items()}

    # ---------------------------------------------------------------- test split
    y = df.label.to_numpy()
    scores, ips, ood = {}, {}, {}
    for k, p in preds.items():
        t0 = time.perf_counter()
        res = p.predict_files(df.path, reject_ood=False)
        ips[k] = len(df) / (time.perf_counter() - t0)
        assert all(r.error is None for r in res)
        scores[k] = np.array([r.p_pneumonia for r in res])
        flags = [r.is_chest_xray for r in res]
        ood[k] = None if flags[0] is None else float(1 - np.mean(flags))

    rows, out = [], {"machine": bench.machine(), "model": keras_pred.name, "threshold": threshold, "runs": args.runs,
                     "calibration_images": args.calibration_images, "formats": {}}
    keras_bytes = keras_pred.path.stat().st_size
    for k in ("keras", *FORMATS):
        m = metrics_at(y, scores[k], threshold)
        entry = {
            "file_MiB": round((keras_bytes if k == "keras" else exports[k]["bytes"]) / 2**20, 2),
            "export_s": None if k == "keras" else round(exports[k]["export_s"], 1),
            "label_ms": lat[(k, "label")]["median_ms"], "label_p95_ms": lat[(k, "label")]["p95_ms"],
            "gradcam_ms": lat[(k, "label + Grad-CAM")]["median_ms"],
            "gradcam_p95_ms": lat[(k, "label + Grad-CAM")]["p95_ms"],
            "end_to_end_ms": lat[(k, "predict(bytes, explain=True)")]["median_ms"],
            "accuracy": round(m["accuracy"], 4), "sensitivity": round(m["recall"], 4),
            "specificity": round(m["specificity"], 4), "auc": round(m["auc"], 4),
            "max_abs_dp": round(float(np.abs(scores[k] - scores["keras"]).max()), 4),
            "label_agreement": round(float(np.mean((scores[k] >= threshold) == (scores["keras"] >= threshold))), 4),
            "ood_rejected": None if ood[k] is None else round(ood[k], 4),
            "files_img_per_s": round(ips[k], 1),
        }
        entry["speedup_label_vs_keras"] = round(lat[("keras", "label")]["median_ms"] / entry["label_ms"], 2)
        out["formats"][k] = entry
        rows.append({"format": "keras (compiled tf.function)" if k == "keras" else f"tflite {k}", **entry})

    mc = out["machine"]
    print(f"model {keras_pred.name}, threshold {threshold:.4f}; {mc['cpu']}, {mc['cpus']} CPUs; TF "
          f"{mc.get('tensorflow')}; CPU busy before run {mc['cpu_busy_before_run']}; latency: batch 1, medians of "
          f"{args.runs} runs; metrics: 624 test films; int8 calibrated on {args.calibration_images} training films")
    bench.print_table(rows, ["format", "file_MiB", "label_ms", "label_p95_ms", "gradcam_ms", "gradcam_p95_ms",
                         "end_to_end_ms", "speedup_label_vs_keras", "files_img_per_s"])
    print()
    bench.print_table(rows, ["format", "accuracy", "sensitivity", "specificity", "auc", "max_abs_dp", "label_agreement",
                         "ood_rejected", "export_s"])
    bench.dump(args.json, out)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
