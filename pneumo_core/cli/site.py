"""``site``: a site's own check of a model. ``site check`` (label-free: shift and prevalence of a set of films),
``site validate`` (against the site's labelled films), ``site calibrate`` (the files each model ships for them).
Other subcommands (``site reads export``, ``site adapt``) register through :data:`SUBCOMMANDS`."""
from __future__ import annotations

from pneumo_core.cli.common import EXIT_OK, error_line, int_at_least, print_json

MODEL_HELP = "'finetuned' (default) or 'frozen': a shipped model (its reports hold the calibration and reference)"


def _predictor(args):
    from pneumo_core.cli.common import load_predictor

    args.backend, args.threshold = None, None  # the shipped model at its validation threshold
    return load_predictor(args)


def cmd_check(args) -> int:
    from pathlib import Path

    from pneumo_core.cli.predict import expand_inputs
    from pneumo_core.site.check import check_films

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {missing[0]}")
    result = check_films(_predictor(args), expand_inputs(args.paths))
    if args.json:
        print_json(result, allow_nan=False)
    else:
        shift = result["feature_shift"]
        print(f"{result['model']}: {result['n']} films ({result['unreadable']} unreadable, "
              f"{result['not_chest_xray']} not chest X-rays, left out)")
        print(f"  positive rate at {result['threshold']:.3f}: {result['positive_rate']:.1%}")
        print(f"  pneumonia share (estimate): {result['prevalence_estimate']:.1%} "
              f"(95% {result['prevalence_ci'][0]:.1%}-{result['prevalence_ci'][1]:.1%})")
        known = ", ".join(f"{name} {shift[key]:.4f}" for name, key in (("validation", "validation_statistic"),
                          ("official test batch", "reference_statistic")) if shift[key] is not None)
        print(f"  feature shift: {shift['statistic']:.4f} (p = {shift['p_value']:.3f}); {known or 'no reference'}")
        print(f"  {result['verdict']}")
    return EXIT_OK


def cmd_validate(args) -> int:
    from pneumo_core.datasets.listing import list_images, resolve_split_dir
    from pneumo_core.imaging.decode import READABLE_SUFFIXES
    from pneumo_core.site.reference import score_films
    from pneumo_core.site.validation import FIELDS, validate_site

    films = list_images(resolve_split_dir(args.data, "test"), suffixes=READABLE_SUFFIXES)
    predictor = _predictor(args)
    p, _ = score_films(predictor, films.path)
    result = validate_site(films.label, p, predictor.threshold, groups=films.patient, n_boot=args.bootstrap)
    out = {"model": predictor.name, **{k: v for k, v in result.items() if k != "roc"}}
    if args.json:
        print_json(_nan_as_null(out), allow_nan=False)
    else:
        print(f"{predictor.name} on {result['n']} labelled films ({result['counts']['NORMAL']} NORMAL, "
              f"{result['counts']['PNEUMONIA']} PNEUMONIA)")
        for name in ("at_active", "at_proposed"):
            block = result[name]
            if block is None:
                print(f"  no site threshold: {result['why_not']}")
                continue
            print(f"  {name.replace('_', ' ')} threshold {block['threshold']:.3f}: "
                  + ", ".join(f"{k} {block[k]:.3f}" for k in FIELDS)
                  + f"; [[TN, FP], [FN, TP]] = {block['confusion_matrix']}")
        print(f"  rule: {result['rule']}")
    return EXIT_OK


def _nan_as_null(value):
    """``value`` (nested JSON) with NaN (an undefined ratio, e.g. PPV with no film called PNEUMONIA) as null:
    strict JSON."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_as_null(v) for v in value]
    return value


def cmd_calibrate(args) -> int:
    from pneumo_core.site.reference import build

    print_json(build(_predictor(args), args.data, permutations=args.permutations))
    return EXIT_OK


def register_check(site) -> None:
    c = site.add_parser("check", help="label-free: how far a set of films lies from the training films, the "
                        "positive rate and the estimated pneumonia share, with a plain verdict")
    c.add_argument("paths", nargs="+", metavar="PATH", help="films or folders (searched recursively)")
    c.add_argument("--model", default="finetuned", choices=["finetuned", "frozen"], help=MODEL_HELP)
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_check)


def register_validate(site) -> None:
    v = site.add_parser("validate", help="the model against a site's labelled films (NORMAL/ and PNEUMONIA/ "
                        "inside): metrics with 95%% intervals at the active and at a proposed site threshold")
    v.add_argument("--data", required=True, help="a folder with NORMAL/ and PNEUMONIA/ inside")
    v.add_argument("--model", default="finetuned", choices=["finetuned", "frozen"], help=MODEL_HELP)
    v.add_argument("--bootstrap", type=int_at_least(0), default=1000,
                   help="bootstrap resamples (whole patients) for the 95%% intervals (0: none; default 1000)")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=cmd_validate)


def register_calibrate(site) -> None:
    k = site.add_parser("calibrate", help="refit what a shipped model carries for the site tools from its "
                        "validation films and a training sample: calibration.json, shift_reference.npz (recorded "
                        "in MANIFEST.json), shift.json")
    k.add_argument("--model", default="finetuned", choices=["finetuned", "frozen"], help=MODEL_HELP)
    k.add_argument("--data", required=True, help="dataset root with train/ (or the train folder itself)")
    k.add_argument("--permutations", type=int_at_least(1), default=500, help="for validation's shift p-value")
    k.set_defaults(func=cmd_calibrate)


def cmd_reads_export(args) -> int:
    """Every current read (CSV by default, or JSON) on stdout; a database failure is one ``error:`` line."""
    import json

    from pneumo_core.errors import StorageError
    from pneumo_core.review.csv_export import safe_csv
    from pneumo_core.storage.reads import SiteReads, export_table

    try:
        db = SiteReads()  # its own engine, disposed below: a CLI run holds no connection afterwards
        try:
            reads = db.reads()
        finally:
            db.dispose()
    except StorageError as exc:
        return error_line(str(exc))
    if args.json:
        print(json.dumps([read.to_json() for read in reads], indent=2, ensure_ascii=False))
    else:  # readers' names are typed by people: no formula reaches a spreadsheet
        print(safe_csv(export_table(reads)).rstrip("\n"))
    return EXIT_OK


def register_reads(site) -> None:
    r = site.add_parser("reads", help="the site's reads of films recorded on the Analyse page (database: "
                        "$PNEUMO_DB_URL, default a SQLite file in the user's data folder)")
    subs = r.add_subparsers(dest="reads_command", required=True)
    export = subs.add_parser("export", help="one row per reader, film and model version: the film's content hash "
                             "(never its name), the model and its SHA-256, score, threshold, OOD distance, the read, "
                             "the reference standard and its source, first and last save (UTC), saves")
    fmt = export.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV, one row per read (the default)")
    fmt.add_argument("--json", action="store_true", help="a JSON list of reads")
    export.set_defaults(func=cmd_reads_export)


def adaptation_report(record: dict) -> str:
    """The human-readable report written beside ``adaptation.json``: what it is, how to use it, what the study
    showed (no film named)."""
    model, site = record["model"], record["threshold_site"]
    return "\n".join([
        "Site adaptation by EM prior-shift correction (opt-in; research and teaching tool, not a diagnostic device)",
        "",
        f"Model: {model} (SHA-256 {record['model_sha256']}).",
        "Unchanged: the adapted model is this same file used at the site threshold below; the shipped models and",
        "their thresholds do not change.",
        f"Films: {record['films_scored']} scored, {record['films_not_scored']} left out (unreadable or not a chest "
        "X-ray); no label used.",
        f"Pneumonia share: {record['train_prevalence']:.1%} in the model's training films; estimated for these films "
        f"by EM: {record['estimated_site_prevalence']:.1%}"
        + ("" if record["em_converged"] else " (EM did not converge: treat it as rough)") + ".",
        f"Threshold: model {record['threshold_model']:.3f}; site {site:.3f} (the model's threshold applied to scores "
        "re-weighted to the estimated share, as a threshold on the model's own scores).",
        "",
        "Use it: adopt it on the Your site page (section 'Adapt to this site'; recorded, reversible), or pass it to",
        f"the CLI: python -m pneumo_core predict PATH... --model {model} --threshold {site:.3f}",
        f"         python -m pneumo_core score PATH... --model {model} --threshold {site:.3f}",
        "",
        f"Evidence: {record['evidence']}.",
        "It met the pre-registered shipping rule (balanced accuracy above the unadapted model in both folds) by one",
        "or two films a fold: the rule was met, an improvement was not shown. It moves only the operating point and",
        "cannot change the ranking (AUC).",
        f"Pre-registration: {record['preregistration']}",
        "",
    ])


def cmd_adapt(args) -> int:
    """EM prior-shift adaptation of a shipped model to a set of unlabelled films: DIR/adaptation.json and
    DIR/README.txt; too few films, a missing path or an unusable DIR is one ``error:`` line (exit 2)."""
    from pathlib import Path

    from pneumo_core.adaptation.adapt import MIN_FILMS, adapt_model
    from pneumo_core.cli.predict import expand_inputs
    from pneumo_core.errors import SiteDataError
    from pneumo_core.review.decisions import plural

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return error_line(f"no such file or folder: {missing[0]}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return error_line(f"--out {out} is a file, not a folder")
    if (out / "adaptation.json").exists():
        return error_line(f"{out} already holds an adaptation.json: choose a new folder (nothing is overwritten)")
    films = expand_inputs(args.paths)
    if len(films) < MIN_FILMS:  # refused before any scoring
        return error_line(f"{plural(len(films), 'film')} given; adapting to a site needs at least {MIN_FILMS}")
    try:
        record = adapt_model(films, out, args.model)
    except SiteDataError as exc:
        return error_line(str(exc))
    (out / "README.txt").write_text(adaptation_report(record))
    if args.json:
        print_json(record, allow_nan=False)
    else:
        print(f"{record['model']}: {record['films_scored']} films scored ({record['films_not_scored']} left out); "
              f"estimated pneumonia share {record['estimated_site_prevalence']:.1%} "
              f"(training {record['train_prevalence']:.1%})")
        print(f"  site threshold {record['threshold_site']:.3f} (model {record['threshold_model']:.3f}); "
              f"written: {out / 'adaptation.json'}, {out / 'README.txt'}")
        print("  the pre-registered study: one or two films a fold better, inside the intervals (README.txt)")
    return EXIT_OK


def register_adapt(site) -> None:
    a = site.add_parser("adapt", help="opt-in, label-free: estimate the films' pneumonia share by EM (the one "
                        "method that met the pre-registered site-adaptation study's rule, by one or two films a "
                        "fold) and write the site threshold it implies: DIR/adaptation.json and DIR/README.txt")
    a.add_argument("paths", nargs="+", metavar="PATH", help="the site's films or folders (searched recursively); "
                   "at least 100 readable chest X-rays")
    a.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder for the record and report")
    a.add_argument("--model", default="finetuned", choices=["finetuned", "frozen"], help=MODEL_HELP)
    a.add_argument("--json", action="store_true", help="print the record (adaptation.json) on stdout")
    a.set_defaults(func=cmd_adapt)


#: Functions that add a ``site`` subcommand to the ``site`` subparsers, in ``--help`` order.
SUBCOMMANDS = [register_check, register_validate, register_calibrate, register_reads, register_adapt]


def register(sub) -> None:
    """``site`` and its subcommands on the subparsers ``sub``."""
    site = sub.add_parser("site", help="a site's own check of the model: site check, site validate, site calibrate, "
                          "site reads export, site adapt")
    subcommands = site.add_subparsers(dest="site_command", required=True)
    for add in SUBCOMMANDS:
        add(subcommands)
