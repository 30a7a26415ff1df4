"""``predict``: label image files, folders, or studies from a PACS (``--dicomweb``)."""
from __future__ import annotations

from pneumo_core.cli.common import EXIT_OK, add_model_args, int_at_least, load_predictor, print_json, warn
from pneumo_core.config import DISCLAIMER_PLAIN


def expand_inputs(items) -> list[str]:
    """Files as given; folders expanded (recursively) to the image and DICOM files inside,
    skipping hidden files (``.DS_Store``, editor backups)."""
    from pathlib import Path

    from pneumo_core.scoring.sources import list_folder

    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_folder(p)
            if not found:
                warn(f"no image or DICOM files in folder {p}")
            out += found
        else:
            out.append(item)
    return out


def open_pacs(args):
    """``--dicomweb`` and its search options (``predict``, ``score``): (the PACS, the Study Instance UIDs
    given or found, the modalities), each warning printed; bad settings or a failing search raise PacsError."""
    from pneumo_core.pacs.dicomweb import Pacs, find_studies
    from pneumo_core.pacs.settings import load_settings, parse_modalities

    settings = load_settings(url=args.dicomweb)
    modalities = parse_modalities(args.modality)
    if settings.cleartext_credentials:
        warn(f"credentials go unencrypted (http://) to {settings.location}")
    pacs = Pacs(settings)
    studies, warnings = find_studies(pacs, modalities, args.study, args.limit)
    warn(*warnings)
    return pacs, studies, modalities


def from_pacs(args):
    """``--dicomweb``: the studies given (``--study``) or found (``--modality``, ``--limit``) scored,
    each warning printed as it arises; returns (predictor, predictions). Bad settings or a failing
    search raise PacsError (one ``error:`` line) before the model loads."""
    from pneumo_core.pacs.dicomweb import score_studies

    pacs, studies, modalities = open_pacs(args)
    predictor = load_predictor(args)
    return predictor, score_studies(pacs, predictor, studies, modalities, store=args.store_results)


def cmd_predict(args) -> int:
    if args.dicomweb:  # studies from a PACS (pneumo_core/pacs/dicomweb.py)
        if args.images:
            raise ValueError("give image files or folders, or --dicomweb URL, not both")
        predictor, results = from_pacs(args)
    else:
        if not args.images or args.study or args.modality or args.limit or args.store_results:
            raise ValueError("give image files or folders (or --dicomweb URL: --study, --modality, --limit and "
                             "--store-results need it)")
        predictor = load_predictor(args)
        results = predictor.predict_files(expand_inputs(args.images), batch_size=args.batch_size)
    if args.json:
        print_json([r.to_json() for r in results], allow_nan=False)
    else:
        print(f"model {predictor.name}, threshold {predictor.threshold:.3f} ({DISCLAIMER_PLAIN.rstrip('.')})")
        for r in results:
            if r.error:
                print(f"{r.file}\tERROR\t{r.error}")
            else:
                print(f"{r.file}\t{r.label}\tp_pneumonia={r.p_pneumonia:.4f}")
    return EXIT_OK


def add_pacs_args(parser, file_column: str):
    """``--dicomweb`` and its search options (``predict``, ``score``) in a new group of ``parser``, returned;
    ``file_column``: what the ``file`` of a PACS film is, in words."""
    pacs = parser.add_argument_group("from a PACS (credentials only from PNEUMO_DICOMWEB_USER/PASSWORD or _TOKEN)")
    pacs.add_argument("--dicomweb", metavar="URL", help="score studies from this DICOMweb server instead of files "
                      f"(e.g. https://pacs.example.org/dicom-web); {file_column}")
    pacs.add_argument("--study", action="append", metavar="UID", help="Study Instance UID to score (repeatable; "
                      "default: every study found by --modality and --limit)")
    pacs.add_argument("--modality", metavar="LIST", help="modalities to search and score (default CR,DX)")
    pacs.add_argument("--limit", type=int_at_least(1), help="at most this many studies found (default 100)")
    return pacs


def register(sub) -> None:
    """``predict`` on the subparsers ``sub``."""
    pr = sub.add_parser("predict", help="label images (files or folders; PNG, JPEG, DICOM, ...)")
    add_model_args(pr)
    pr.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR",
                    help="image or DICOM files, or folders (searched recursively)")
    pacs = add_pacs_args(pr, "file = studies/<uid>/series/<uid>/instances/<uid>")
    pacs.add_argument("--store-results", action="store_true", help="store one Secondary Capture per scored film "
                      "(heatmap, score, research-use banner) in a new series of its study")
    pr.set_defaults(func=cmd_predict)
