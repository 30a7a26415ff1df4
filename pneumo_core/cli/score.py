"""``score``: archive-scale scoring of folders, lists of paths or a PACS into Parquet written as the job goes,
resumable (``--resume``), in this process or on Ray (``--engine ray``); a progress bar on stderr and a summary."""
from __future__ import annotations

import os
import sys
import time

from pneumo_core.cli.common import EXIT_OK, add_model_args, int_at_least, print_json, warn
from pneumo_core.cli.predict import add_pacs_args, open_pacs
from pneumo_core.config import DISCLAIMER_PLAIN

#: Films a batch (one Parquet part) by default: a kill loses at most one batch a worker.
DEFAULT_BATCH = 256


class Progress:
    """Films stored so far, on ``stream``: a bar redrawn in place on a terminal, else a plain line at most
    every ``every_s`` seconds (logs of a batch system)."""

    def __init__(self, total: int, stream=None, every_s: float = 15.0):
        self.total, self.every_s = total, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.drawn = False

    def __call__(self, tally) -> None:
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else self.every_s) and tally.films < self.total:
            return
        self.last = now
        rate = tally.films / max(now - self.start, 1e-9)
        left = (self.total - tally.films) / rate if rate > 0 else 0
        counts = f"{tally.films}/{self.total} films, {tally.errors} errors, {rate:.1f} films/s"
        if self.tty:
            done = int(30 * tally.films / max(self.total, 1))
            self.stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {counts}, {left:.0f} s left ")
            self.drawn = True
        else:
            self.stream.write(f"progress: {counts}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _films(args) -> tuple[list[dict], list[dict]]:
    """(films to score, rows for PACS studies that could not be listed) from the sources."""
    from pneumo_core.scoring.sources import expand_sources, pacs_films

    if args.dicomweb:
        pacs, studies, modalities = open_pacs(args)
        return pacs_films(pacs, studies, modalities)
    films, warnings = expand_sources(args.sources)
    warn(*warnings)
    for film in films:  # the same key whatever folder a rerun starts from, and what a Ray worker opens
        film["file"] = os.path.abspath(film["file"])
    return films, []


def cmd_score(args) -> int:
    from pneumo_core.scoring.engines import RAY_INSTALL, ray_available, run_local, run_ray
    from pneumo_core.scoring.results import ResultsWriter
    from pneumo_core.scoring.scorer import FilmScorer

    start = time.monotonic()
    if bool(args.sources) == bool(args.dicomweb):
        raise ValueError("give folders, lists of paths (.txt, .csv, .parquet) or films, or --dicomweb URL "
                         "(one of them)")
    if not args.dicomweb and (args.study or args.modality or args.limit):
        raise ValueError("--study, --modality and --limit need --dicomweb URL")
    if args.ray_address and args.engine != "ray":
        raise ValueError("--ray-address needs --engine ray")
    if args.engine == "ray" and not ray_available():
        from pneumo_core.errors import MissingDependency

        raise MissingDependency(f"--engine ray needs Ray: {RAY_INSTALL}")
    films, failed = _films(args)
    writer = ResultsWriter(args.out, resume=args.resume)
    options = {"model": args.model, "threshold": args.threshold, "kind": args.backend, "batch_size": args.batch_size,
               "pacs_url": args.dicomweb}
    # the driver loads the model too: a bad model stops the job before any work, with one line
    scorer = FilmScorer(**options, warm_up=args.engine == "local")
    total = len(films) + len(failed)
    failed = writer.write(scorer.table(failed)) if failed else None
    todo = [f for f in films if f["file"] not in writer.done]
    skipped = total - len(todo) - (failed.num_rows if failed is not None else 0)
    progress = Progress(len(todo))
    try:
        if args.engine == "ray":
            tally = run_ray(todo, writer, options, args.batch, progress, address=args.ray_address,
                            threads=args.worker_threads)
        else:
            tally = run_local(todo, writer, options, args.batch, progress, scorer=scorer)
    finally:
        progress.close()
    if failed is not None:
        tally.add(failed)
    seconds = time.monotonic() - start
    p = scorer.predictor
    summary = {"films": total, "scored": tally.films, "errors": tally.errors, "skipped": skipped,
               "seconds": round(seconds, 2), "films_per_s": round(tally.films / seconds, 2) if seconds else None,
               "engine": args.engine, "out": str(writer.folder), "model": p.name, "model_sha256": p.sha256,
               "threshold": p.threshold}
    if args.json:
        print_json(summary, allow_nan=False)
    else:
        print(f"{total} films: {tally.films} scored ({tally.errors} errors), {skipped} already in {writer.folder}; "
              f"{seconds:.1f} s, {summary['films_per_s']} films/s on the {args.engine} engine")
        print(f"model {p.name}, threshold {p.threshold:.3f} ({DISCLAIMER_PLAIN.rstrip('.')})")
    return EXIT_OK


def register(sub) -> None:
    """``score`` on the subparsers ``sub``."""
    sc = sub.add_parser("score", help="score an archive (folders, lists, a PACS) into Parquet, resumable, "
                                      "locally or on Ray")
    add_model_args(sc)
    sc.add_argument("sources", nargs="*", metavar="SOURCE",
                    help="folders (searched recursively), lists of paths (.txt: one a line; .csv or .parquet: "
                         "a file or path column; relative paths from the list's folder) or image files")
    sc.add_argument("--out", required=True, metavar="RESULTS",
                    help="results folder: one Parquet part per batch, written as the job goes "
                         "(pyarrow.parquet.read_table(RESULTS) reads them all)")
    sc.add_argument("--resume", action="store_true", help="carry on a job: skip the films already in RESULTS")
    sc.add_argument("--batch", type=int_at_least(1), default=DEFAULT_BATCH,
                    help=f"films a batch, each stored as one Parquet part (default {DEFAULT_BATCH})")
    sc.add_argument("--engine", choices=["local", "ray"], default="local",
                    help="local: this process (default); ray: Ray Data actors, one model per actor "
                         "(pip install -r requirements-scale.txt)")
    sc.add_argument("--ray-address", metavar="ADDR",
                    help="an existing Ray cluster (e.g. ray://head:10001, or auto); default: a local Ray on this "
                         "machine's CPUs")
    sc.add_argument("--worker-threads", type=int_at_least(1), default=1,
                    help="LiteRT threads per Ray actor; one actor runs per that many CPUs of the cluster (default 1)")
    add_pacs_args(sc, "file = a hashed reference (st-<16 hex>/in-<16 hex>), never a UID")
    sc.set_defaults(func=cmd_score)
