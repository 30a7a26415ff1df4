"""``evaluate``: metrics on a labelled split."""
from __future__ import annotations

from pneumo_core.cli.common import (
    EXIT_OK,
    add_model_args,
    error_line,
    int_at_least,
    load_predictor,
    print_json,
    threshold_source,
)


def cmd_evaluate(args) -> int:
    from pathlib import Path

    import pandas as pd

    from pneumo_core.datasets import listing
    from pneumo_core.evaluation.metrics import full_report, write_report
    from pneumo_core.imaging.decode import READABLE_SUFFIXES

    if args.protocol:
        from pneumo_core.datasets.protocols import test_part

        df = test_part(args.data, args.protocol, args.split_seed)
        # train/ and test/ reuse file names (IM-0001-0001.jpeg is in both): keep the folder
        df = df.assign(file=[str(Path(p).relative_to(Path(args.data))) for p in df.path])
        split_dir = f"{args.protocol} test part (split seed {args.split_seed}) of {args.data}"
    else:
        split_dir = listing.resolve_split_dir(args.data, "test")
        df = listing.list_images(split_dir, suffixes=READABLE_SUFFIXES)
    predictor = load_predictor(args)
    results = predictor.predict_files(df.path, batch_size=args.batch_size, reject_ood=False)
    failed = [r for r in results if r.error]
    if failed:
        return error_line(f"{len(failed)} file(s) could not be read, e.g. {failed[0].file}: {failed[0].error}")
    preds = pd.DataFrame({"file": df.file, "patient": df.patient, "label": df.label,
                          "p_pneumonia": [r.p_pneumonia for r in results],
                          "is_chest_xray": [r.is_chest_xray for r in results]})
    meta = {
        "model": predictor.name, "model_sha256": predictor.sha256, "data": str(split_dir),
        "counts": {"NORMAL": int((df.label == 0).sum()), "PNEUMONIA": int((df.label == 1).sum())},
        "threshold_rule": threshold_source(predictor),
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
        print_json(out, allow_nan=False)
    else:
        print(f"{predictor.name} on {split_dir} ({len(df)} images), threshold {predictor.threshold:.3f}")
        for k in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
            ci = f"  (95% CI {out['ci95'][k][0]:.4f}-{out['ci95'][k][1]:.4f})" if out["ci95"] else ""
            print(f"  {k:12s} {out[k]:.4f}{ci}")
        print(f"  confusion [[TN, FP], [FN, TP]] = {out['confusion_matrix']}")
    return EXIT_OK


def register(sub) -> None:
    """``evaluate`` on the subparsers ``sub``."""
    from pneumo_core.datasets.protocols import PROTOCOLS

    e = sub.add_parser("evaluate",
                       help="metrics on a labelled split (NORMAL/ and PNEUMONIA/ inside, or a dataset root)")
    add_model_args(e)
    e.add_argument("--data", required=True, help="a folder with NORMAL/ and PNEUMONIA/ inside, or a dataset root "
                   "(its test/ is used)")
    e.add_argument("--protocol", choices=PROTOCOLS, help="evaluate on this protocol's test part of the dataset "
                   "root --data (default: the folder given, or its test/)")
    e.add_argument("--split-seed", type=int, default=42, help="with --protocol: the seed the model was trained with")
    e.add_argument("--bootstrap", type=int_at_least(0), default=1000,
                   help="bootstrap resamples for the 95%% CIs (0: no CIs; default 1000)")
    e.add_argument("--write-report", metavar="DIR", help="also write metrics.json, test_predictions.csv, roc_curve.csv")
    e.set_defaults(func=cmd_evaluate)
