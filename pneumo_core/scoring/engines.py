"""Where the scoring runs. Both engines feed batches of films to one :class:`scorer.FilmScorer` per worker and
store each batch's rows as one Parquet part as soon as it comes back (:class:`results.ResultsWriter`).

- ``local``: the scorer in this process, batch after batch (LiteRT on every core, threaded decoding).
- ``ray``: Ray Data, ``map_batches`` with the scorer as a callable class, so each actor loads the model once;
  one actor per ``threads`` CPUs of the cluster, each running LiteRT on ``threads`` threads (actors x threads =
  cores). A worker that dies is restarted and its batches run again (Ray Data's actor restarts and task
  retries); the writer drops any row already stored, so a retried batch is never stored twice. Ray is
  imported only here, when this engine runs: the runtime does not install it (requirements-scale.txt)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from pneumo_core.scoring.results import ResultsWriter

ENGINES = ("local", "ray")
RAY_INSTALL = "pip install -r requirements-scale.txt (Ray Data)"


@dataclass
class Tally:
    """What a job stored: rows, and rows with an error."""

    films: int = 0
    errors: int = 0

    def add(self, table) -> None:
        self.films += table.num_rows
        self.errors += table.num_rows - table.column("error").null_count


def _batches(films: list[dict], size: int):
    for start in range(0, len(films), size):
        yield films[start : start + size]


def run_local(films: list[dict], writer: ResultsWriter, scorer_options: dict, batch: int,
              progress: Callable[[Tally], None] | None = None, scorer=None) -> Tally:
    """Score ``films`` in this process, ``batch`` films a part; ``scorer``: an already loaded one."""
    import pyarrow as pa

    from pneumo_core.scoring.scorer import FilmScorer

    if not films:
        return Tally()
    scorer = scorer or FilmScorer(**scorer_options)
    tally = Tally()
    for chunk in _batches(films, batch):
        tally.add(writer.write(scorer(pa.Table.from_pylist(chunk))))
        if progress is not None:
            progress(tally)
    return tally


def ray_available() -> bool:
    from importlib.util import find_spec

    return find_spec("ray") is not None and find_spec("ray.data") is not None


def run_ray(films: list[dict], writer: ResultsWriter, scorer_options: dict, batch: int,
            progress: Callable[[Tally], None] | None = None, address: str | None = None,
            threads: int = 1) -> Tally:
    """Score ``films`` on Ray: a new local Ray on this machine's CPUs, or the cluster at ``address``
    (``auto``: the one this machine is part of). Raises MissingDependency where Ray is not installed."""
    from pneumo_core.errors import MissingDependency

    if not ray_available():
        raise MissingDependency(f"--engine ray needs Ray: {RAY_INSTALL}")
    if not films:
        return Tally()
    import pyarrow as pa
    import ray

    from pneumo_core.scoring.scorer import FilmScorer

    started = not ray.is_initialized()
    if started:
        options = {"address": address} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
        try:
            ray.init(logging_level=logging.WARNING, log_to_driver=False, **options)
        except ConnectionError as exc:
            raise ValueError(f"cannot reach the Ray cluster at --ray-address ({type(exc).__name__})") from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own
        context.print_on_execution_start = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = max(1, min(threads, cpus))
        actors = max(1, cpus // threads)
        # the rows carry only paths (or UIDs): each actor reads its films itself, so every worker must see
        # the same paths (a shared mount on a cluster)
        dataset = ray.data.from_items(films, override_num_blocks=max(1, -(-len(films) // batch)))
        scored = dataset.map_batches(
            FilmScorer, fn_constructor_kwargs={**scorer_options, "num_threads": threads}, batch_size=batch,
            batch_format="pyarrow", concurrency=actors, num_cpus=threads)
        tally = Tally()
        try:
            for table in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
                tally.add(writer.write(pa.table(table)))
                if progress is not None:
                    progress(tally)
        except ray.exceptions.RayError as exc:  # e.g. a worker without the model: Ray's message is a traceback
            raise ValueError(f"the Ray job failed ({type(exc).__name__}) after {tally.films} films were stored; "
                             "rerun with --resume to carry on") from exc
        return tally
    finally:
        if started:
            ray.shutdown()
